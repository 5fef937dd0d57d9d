"""`kpictl jobs` (list, newest first) and `kpictl jobs show ID`.

`jobs` is a group whose default (no subcommand) lists, so that both `kpictl jobs --status
failed` and `kpictl jobs show ID` work (`kpictl_group_default`).
"""

from typing import Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command, kpictl_group_default, new_app
from kpictl.cli.options import (
    Format,
    JobsLimitOption,
    JobStatus,
    JobType,
    TableFormat,
    TableFormatOption,
)
from kpictl.settings import Settings

app = typer.Typer()

LIST_HELP = """List pipeline jobs, newest first; `jobs show ID` for one.

Jobs of aggregate, backfill, retention and history fill: id, type, status, start, end, duration,
snapshots written, error.

Examples:

    kpictl jobs

    kpictl jobs --status failed --limit 50

    kpictl jobs --type backfill --format json

    kpictl jobs show 0b6f5f2e
"""

SHOW_HELP = """Show one job with every column and its metadata (host, pid, version, command
line, per-step counts and timings). ID may be the start of the id, as long as one job has it:
exit 2 listing the candidates when several do, exit 1 when none does.

Examples:

    kpictl jobs show 0b6f5f2e-8d1c-4c41-9a57-1f0e7c1d2a33

    kpictl jobs show 0b6f5f2e --format json
"""

jobs_app = new_app("jobs", help=LIST_HELP)
app.add_typer(jobs_app)

StatusOption = Annotated[
    JobStatus | None, typer.Option("--status", help="Only jobs with this status.")
]
TypeOption = Annotated[JobType | None, typer.Option("--type", help="Only jobs of this type.")]
JobIdArgument = Annotated[
    str,
    typer.Argument(
        help="The job's id, or the start of it (as `kpictl jobs` shows it).", metavar="ID"
    ),
]


@kpictl_group_default(jobs_app, help=LIST_HELP)
def list_jobs(
    settings: Settings,
    limit: JobsLimitOption = "10",
    status: StatusOption = None,
    job_type: TypeOption = None,
    format: TableFormatOption = TableFormat.table,
) -> None:
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.options import whole_number
    from kpictl.cli.render import jobs as render
    from kpictl.services.jobs import listing as service

    count = whole_number(limit, "--limit")  # its range is the service's (check_filters)
    wanted = {"status": status and status.value, "job_type": job_type and job_type.value}
    service.check_filters(count, **wanted)
    with open_database(settings).engine.connect() as connection:
        jobs = service.list_jobs(connection, limit=count, **wanted)
    output.emit_rows(
        format.value, service.LIST_COLUMNS, render.list_rows(jobs), optional=render.OPTIONAL
    )


@kpictl_command(jobs_app, "show", help=SHOW_HELP)
def show(
    settings: Settings,
    job_id: JobIdArgument,
    format: TableFormatOption = TableFormat.table,
) -> None:
    from kpictl.cli.database import open_database
    from kpictl.services.jobs import listing as service

    prefix = service.parse_job_id_prefix(job_id)
    with open_database(settings).engine.connect() as connection:
        job = service.show_job(connection, service.resolve_job_id(connection, prefix))
    _show_job(job, format)


def _show_job(job: dict[str, Any], format: Format) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import jobs as render

    if format == Format.json:
        output.emit_success(job)
    elif format == Format.ndjson:
        output.emit_ndjson(list(job), [list(job.values())])
    elif format == Format.csv:
        output.emit_csv(list(job), [render.show_csv_row(job)])
    else:
        output.echo_lines(render.job_lines(job))
