"""`kpictl report`: one self-contained HTML file of the KPIs over the last days."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kpictl.cli import complete
from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import TENANT_HELP
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.reports.report import Report, Thresholds

app = typer.Typer()

ReportTenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help=f"{TENANT_HELP}: add its weekly history charts.",
        metavar="TENANT",
        show_default=False,
        autocompletion=complete.tenants,
    ),
]
ReportDaysOption = Annotated[
    str, typer.Option("--days", help="How many days back the report reaches.", metavar="N")
]
ReportFileOption = Annotated[
    Path,
    typer.Option(
        "--output",
        help="The HTML file to write (atomically: a temporary file, then a rename).",
        metavar="FILE",
        show_default=False,
    ),
]

HELP = """Write an HTML report of the KPIs: one file, viewable offline.

Factory KPIs as line charts over the last --days, the products' latest values with their trend,
freshness of the factory KPIs, and the last jobs (failed ones first); with --tenant, that
tenant's weekly history. The file loads nothing from the network and runs no script, so it can
be published on an internal web server from a timer (docs/deploy/README.md).

--tenant: its history is read as `history export` reads it (row-level security).

Examples:

    kpictl report --output kpis.html

    kpictl report --output /var/www/kpis/index.html --days 90

    kpictl report --output acme.html --tenant acme --days 180
"""


@kpictl_command(app, "report", help=HELP)
def report(
    settings: Settings,
    output_path: ReportFileOption,
    days: ReportDaysOption = "30",
    tenant: ReportTenantOption = None,
) -> None:
    import logging

    from kpictl.cli.options import output_file, whole_number
    from kpictl.cli.render import report as render
    from kpictl.services.history.export import write_atomically
    from kpictl.services.reports.report import MAX_DAYS

    number = whole_number(days, "--days", within=(1, MAX_DAYS))
    target = output_file(output_path)
    assert target is not None  # --output is required
    gathered = _gather(settings, number, tenant)
    write_atomically(target, lambda out: out.write(render.html(gathered)))
    logging.getLogger(__name__).info("report written to %s", target)


def _gather(settings: Settings, days: int, tenant: str | None) -> "Report":
    """Read everything in one transaction (the tenant's rows need its `app.tenant` setting)."""
    from kpictl.cli.database import open_database
    from kpictl.services.history import grants
    from kpictl.services.history.tenants import parse_tenant_argument, resolve_tenant
    from kpictl.services.reports.report import gather

    argument = parse_tenant_argument(tenant) if tenant is not None else None
    with open_database(settings).engine.begin() as connection:
        chosen = resolve_tenant(connection, argument) if argument else None
        if chosen is not None:
            grants.check_can_read(connection, chosen)
        return gather(connection, days=days, thresholds=_thresholds(settings), tenant=chosen)


def _thresholds(settings: Settings) -> "Thresholds":
    """The freshness thresholds `kpictl freshness` would use without flags."""
    from kpictl import kpis as registry
    from kpictl.cli.freshness import per_kpi_thresholds, thresholds
    from kpictl.services.reports.report import Thresholds

    warn, error = thresholds(settings, None, None)
    factory = list(registry.at_level("factory"))
    return Thresholds(warn, error, per_kpi_thresholds(settings, None, None, factory))
