"""docs/CLI.md, generated from the command tree: every command with its usage line, its help
text and its options, as `--help` shows them. Regenerate it after changing a command:

    python -m kpictl.cli.reference > docs/CLI.md

`tests/cli/test_cli_reference.py` fails when the committed file is out of date. The tree is
Typer's (`typer.main.get_command`); nothing here imports Click itself (Typer bundles its own).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any

import typer
import typer.main

REGENERATE = "python -m kpictl.cli.reference > docs/CLI.md"
COMMON_PANEL = "Common options"  # the `rich_help_panel` of the options every command has
WIDTH = 100  # the usage line is wrapped as `--help` wraps it (cli/commands.py::new_app)

# Linked from the page, which lives in docs/ (paths here from the repository's top).
CONTRACT = ("docs/spec/cli.md", "docs/spec/pipeline.md", "docs/spec/history.md")
ADOPTION_CONTRACT = "docs/spec/adoption.md"
ARCHITECTURE = "docs/ARCHITECTURE.md"


def _link(path: str) -> str:
    shown = path.removeprefix("docs/")
    return f"[{shown}]({shown})"


PREAMBLE = f"""# Command-line reference

<!-- Generated from the command tree: `{REGENERATE}`. Do not edit by hand. -->

Every `kpictl` command, its options and examples, as `kpictl COMMAND --help` prints them. What
the commands promise (exit codes, output formats, JSON documents) is the contract in
{", ".join(_link(page) for page in CONTRACT)} and {_link(ADOPTION_CONTRACT)}; how they are
built is in {_link(ARCHITECTURE)}.
"""


def render_reference(app: typer.Typer | None = None) -> str:
    """The Markdown of docs/CLI.md for `app` (default: kpictl's root app)."""
    if app is None:
        from kpictl.cli.app import app as kpictl_app

        app = kpictl_app
    root = _context(typer.main.get_command(app), "kpictl")
    contexts = list(_walk(root))
    parts = [PREAMBLE, _index(contexts), _common_options(contexts)]
    parts += [_section(context) for context in contexts]
    return "\n".join(parts).rstrip("\n") + "\n"


def _context(command: Any, name: str, parent: typer.Context | None = None) -> typer.Context:
    return typer.Context(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )


def _walk(context: typer.Context) -> Iterator[typer.Context]:
    """`context`, then every command under it, depth first, in the order `--help` lists them."""
    yield context
    group = context.command
    for name in getattr(group, "list_commands", lambda _: [])(context):
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        if command is not None and not command.hidden:
            yield from _walk(_context(command, name, context))


def _index(contexts: list[typer.Context]) -> str:
    lines = ["## Commands", ""]
    for context in contexts[1:]:
        summary = context.command.get_short_help_str(limit=WIDTH)
        lines.append(f"- [`{context.command_path}`](#{_anchor(context)}): {summary}")
    return "\n".join(lines) + "\n"


def _anchor(context: typer.Context) -> str:
    return context.command_path.replace(" ", "-")


def _common_options(contexts: list[typer.Context]) -> str:
    """The options every command takes, listed once."""
    for context in contexts:
        common = [p for p in context.command.params if _is_common(p)]
        if common:
            lines = ["## Common options", "", "Every command takes these:", ""]
            lines += _option_lines(common, context)
            lines.append("- `-h, --help`: Show the command's help and exit.")
            return "\n".join(lines) + "\n"
    return ""


def _is_common(parameter: Any) -> bool:
    return getattr(parameter, "rich_help_panel", None) == COMMON_PANEL


def _section(context: typer.Context) -> str:
    """One command: its usage line, help text (examples included), options, subcommands."""
    command = context.command
    usage = command.get_usage(context).removeprefix("Usage: ")
    lines = [f"## {context.command_path}", "", "```text", usage, "```", ""]
    text = inspect.cleandoc(command.help or "").replace("\b\n", "")  # the no-rewrap marks
    lines += [re.sub(r"\n{3,}", "\n\n", text), ""]
    own = [p for p in command.params if not _is_common(p) and not getattr(p, "hidden", False)]
    if own:
        lines += ["Options:", "", *_option_lines(own, context), ""]
    subcommands: list[str] = getattr(command, "list_commands", lambda _: [])(context)
    if subcommands:
        shown = ", ".join(f"`{name}`" for name in subcommands)
        lines += [f"Subcommands: {shown}.", ""]
    return "\n".join(lines)


def _option_lines(parameters: list[Any], context: typer.Context) -> list[str]:
    """`- `NAMES METAVAR`: help  [default, env var, required]`, one per parameter."""
    lines = []
    for parameter in parameters:
        record = parameter.get_help_record(context)
        if record is not None:
            names, help_text = record
            lines.append(f"- `{names}`: {' '.join(help_text.split())}".rstrip())
    return lines


def main() -> None:
    sys.stdout.write(render_reference())


if __name__ == "__main__":
    main()
