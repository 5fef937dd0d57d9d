"""Errors found while parsing the command line, in kpictl's one style.

Click shows a bad option as `Usage: ...` / `Error: Invalid value ...`; kpictl's own checks say
`kpictl: error: ...`. The root group (`KpictlGroup`, used by `new_app` for the root app) parses
in Click's non-standalone mode and reports what Click raised the way `cli/runtime.py` reports
everything else: one `kpictl: error:` line, a `hint:` naming the help, exit 2. With `--format
json` the same failure is also a JSON document on stdout; for `freshness --format nagios` it is
the plugin's UNKNOWN status line and exit 3.

No heavy imports here: this module is on the `--help` and completion path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

USAGE_EXIT_CODE = 2


class KpictlGroup(TyperGroup):
    """The root command: Click's parsing errors in kpictl's style (see the module's doc)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        arguments = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(arguments, prog_name, complete_var, False, **extra)
        except typer.Abort:
            print("kpictl: error: aborted", file=sys.stderr)
            sys.exit(1)
        except typer.TyperException as exc:  # Click's errors: bad option or value, ...
            sys.exit(report(exc, arguments))
        sys.exit(result if isinstance(result, int) else 0)


def report(exc: typer.TyperException, arguments: Sequence[str]) -> int:
    """One line on stderr (and the document of --format json / nagios); the exit code."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `kpictl` alone: the help, as Click shows it
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", USAGE_EXIT_CODE))
    message = _message(exc)
    print(f"kpictl: error: {message}", file=sys.stderr)
    context = getattr(exc, "ctx", None)
    if context is not None:
        print(f"hint: see `{context.command_path} --help`", file=sys.stderr)
    code = int(getattr(exc, "exit_code", 1))
    chosen = requested_format(arguments)
    if chosen == "nagios" and "freshness" in arguments:
        from kpictl.cli.render.freshness import UNKNOWN_EXIT_CODE, render_nagios_unknown

        print(render_nagios_unknown(f"usage: {message}"))
        return UNKNOWN_EXIT_CODE
    if chosen == "json":
        from kpictl.cli import output

        output.emit_json(output.failure(message, code))
    return code


def _message(exc: typer.TyperException) -> str:
    format_message = getattr(exc, "format_message", None)
    text = format_message() if callable(format_message) else str(exc)
    return text[:1].lower() + text[1:]


def requested_format(arguments: Sequence[str]) -> str | None:
    """The value of `--format` on the command line (the last one given), if any."""
    chosen = None
    for index, argument in enumerate(arguments):
        if argument == "--format" and index + 1 < len(arguments):
            chosen = arguments[index + 1]
        elif argument.startswith("--format="):
            chosen = argument.partition("=")[2]
    return chosen
