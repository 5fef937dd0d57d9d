"""The root Typer app: mounts one module per command group."""

from typing import Annotated

import typer

from kpictl import __version__
from kpictl.cli import (
    demo,
    doctor,
    freshness,
    history,
    jobs,
    kpis,
    migrate,
    pipeline,
    retention,
)
from kpictl.cli.commands import new_app

app = new_app(
    help="KPIs for code factories, computed inside PostgreSQL.\n\n"
    "Examples:\n\n"
    "    kpictl demo                              # try it: embedded database, sample data\n\n"
    "    kpictl migrate && kpictl aggregate --period-hours 168\n\n"
    "    kpictl history export --tenant acme --format csv"
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kpictl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """KPIs for code factories, computed inside PostgreSQL."""


# One module per command group, in the order `--help` lists them.
for group in (demo, migrate, pipeline, kpis, freshness, jobs, history, retention, doctor):
    app.registered_commands.extend(group.app.registered_commands)
    app.registered_groups.extend(group.app.registered_groups)


def main() -> None:
    import sys

    from kpictl.cli.options import normalize_argv, wants_nagios

    args = normalize_argv(sys.argv[1:])
    if wants_nagios(args):
        sys.exit(_as_nagios_plugin(args))
    app(args=args, prog_name="kpictl")


def _as_nagios_plugin(args: list[str]) -> int:
    """Run `freshness --format nagios`; a usage error found on the command line is UNKNOWN (3)
    with a status line on stdout (kpictl's own usage errors: `runtime.run_command`)."""
    import sys

    from kpictl.cli.render.freshness import UNKNOWN_EXIT_CODE, render_nagios_unknown

    try:
        result = app(args=args, prog_name="kpictl", standalone_mode=False)
    except typer.TyperException as exc:
        if getattr(exc, "exit_code", None) != 2:
            raise
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(render_nagios_unknown(f"usage: {message}"))
        print(f"kpictl: error: {message}", file=sys.stderr)
        return UNKNOWN_EXIT_CODE
    return result if isinstance(result, int) else 0
