"""Every command's `--help` at 80 columns: its examples as written, one command a line (Click
rewraps paragraphs unless marked; `cli/commands.py::verbatim_examples` marks them), none wider
than the terminal. No database."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from kpictl.cli.app import app

WIDTH = 80


def commands() -> list[tuple[str, ...]]:
    """The path of every command and group, `()` for kpictl itself."""
    found: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def example_lines(path: tuple[str, ...]) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    help_text = command.help or ""
    return [line.strip() for line in help_text.splitlines() if line.startswith("    kpictl")]


@pytest.mark.parametrize("path", commands(), ids=lambda path: " ".join(path) or "kpictl")
def test_help_at_80_columns_keeps_every_example_verbatim(path):
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=WIDTH, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    shown = [line.strip() for line in result.output.splitlines()]
    examples = example_lines(path)
    assert examples or path in {("history",), ("jobs", "show")} or not path, "no examples"
    for example in examples:
        assert example in shown, f"{example!r} is not a line of `kpictl {' '.join(path)} --help`"
    too_wide = [line for line in result.output.splitlines() if len(line) > WIDTH]
    assert too_wide == []


def test_kpictl_alone_prints_its_help_and_exits_2():
    result = CliRunner().invoke(app, [], prog_name="kpictl")
    assert result.exit_code == 2
    assert "Usage: kpictl [OPTIONS] COMMAND" in result.output
    assert "kpictl: error" not in result.output


def test_a_parse_error_in_kpictl_s_style_also_with_format_equals_json():
    result = CliRunner().invoke(app, ["jobs", "--bogus", "--format=json"], prog_name="kpictl")
    assert result.exit_code == 2
    assert result.stderr.startswith("kpictl: error: no such option: --bogus")
    assert "hint: see `kpictl jobs --help`" in result.stderr
    assert '"exit_code": 2' in result.stdout and "Usage:" not in result.output


def test_the_root_command_in_click_s_non_standalone_mode_is_click_s():
    command = typer.main.get_command(app)
    assert command.main(["--version"], prog_name="kpictl", standalone_mode=False) == 0
