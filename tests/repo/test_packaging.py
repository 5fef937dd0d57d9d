"""The wheel ships the migrations and the report's template, so an installed `kpictl migrate` or
`kpictl report` needs no source checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_migrations(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("kpictl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {p.name for p in (ROOT / "alembic" / "versions").glob("*.py")}
    assert "kpictl/_alembic/env.py" in names
    assert "kpictl/_alembic/alembic.ini" in names
    assert {f"kpictl/_alembic/versions/{name}" for name in revisions} <= names
    assert "kpictl/cli/render/templates/report.html.j2" in names  # `kpictl report`'s page
    assert not [name for name in names if "__pycache__" in name]
    assert any(name.endswith("entry_points.txt") for name in names)
