"""docs/CLI.md is generated from the command tree (`kpictl/cli/reference.py`): it must be what
the generator writes today, and every command it lists must say what it does, with examples.
No database."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from kpictl.cli.reference import REGENERATE, render_reference

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "CLI.md"


def test_docs_cli_md_is_current():
    expected = render_reference()
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if committed != expected:
        diff = difflib.unified_diff(
            committed.splitlines(), expected.splitlines(), "docs/CLI.md", "generated", lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/CLI.md is out of date; regenerate it with `{REGENERATE}`\n{shown}")


def test_the_module_prints_the_reference():
    """What the regeneration command writes is what the test compares with."""
    result = subprocess.run(
        [sys.executable, "-m", "kpictl.cli.reference"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_reference()


def test_every_command_has_a_section_with_examples():
    text = render_reference()
    sections = text.split("\n## ")[1:]
    commands = [s for s in sections if s.startswith("kpictl")]
    names = {section.splitlines()[0] for section in commands}
    assert {"kpictl aggregate", "kpictl jobs show", "kpictl history export"} <= names
    for section in commands:
        assert "Examples:" in section, section.splitlines()[0]


def test_common_options_are_listed_once():
    text = render_reference()
    assert text.count("`--database-url URL`") == 1
    assert text.count("`--log-format <text|json>`") == 1
