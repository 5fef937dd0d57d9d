"""kpictl's Alembic revisions as files: where they live, the version table's name, and the head
the files name, read without importing Alembic.

The schema gate runs before every command that touches kpictl's tables; importing Alembic (and
every revision module) would add a third of a second to each of them. Alembic stays the
authority: the gate asks it whenever the database is not at the head read here, and a test
keeps the two in agreement.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from kpictl.errors import CommandFailed

VERSION_TABLE = "kpictl_alembic_version"

# `revision: str = "0004"`, `down_revision: str | None = "0003"` at the top of a revision file.
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\b[^=\n]*=\s*(.+?)\s*$", re.MULTILINE)


def script_location() -> Path:
    """The migrations: shipped inside the wheel, or at the top of a source checkout."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "_alembic", package_dir.parent / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise CommandFailed(f"kpictl's migrations are missing (looked in {package_dir})")


@functools.cache
def head_from_files() -> str | None:
    """The one revision that no revision file names as its `down_revision`; None when the files
    do not say it plainly (then only Alembic can tell)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((script_location() / "versions").glob("*.py")):
        if path.name.startswith(("__", ".#")):  # what Alembic skips too
            continue
        found: dict[str, str] = {}
        for name, value in _ASSIGNMENT.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, value)
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):
            return None
        revisions.add(revision)
        parents.update(down if isinstance(down, tuple | list) else [down] if down else [])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
