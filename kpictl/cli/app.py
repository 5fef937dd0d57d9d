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
    report,
    retention,
)
from kpictl.cli.commands import new_app

app = new_app(
    help="KPIs for code factories, computed inside PostgreSQL.\n\n"
    "Examples:\n\n"
    "    kpictl demo                  # try it: embedded database, sample data\n\n"
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
for group in (demo, migrate, pipeline, kpis, report, freshness, jobs, history, retention, doctor):
    app.registered_commands.extend(group.app.registered_commands)
    app.registered_groups.extend(group.app.registered_groups)


def main() -> None:
    import sys

    from kpictl.cli.options import normalize_argv

    app(args=normalize_argv(sys.argv[1:]), prog_name="kpictl")
