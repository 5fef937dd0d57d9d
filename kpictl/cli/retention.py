"""`kpictl retention`: delete old snapshots per level and old job rows, in bounded batches."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    BatchSizeOption,
    FactoryDaysOption,
    Format,
    JobsDaysOption,
    ProductDaysOption,
    RunDaysOption,
    TableFormat,
    TableFormatOption,
)
from kpictl.settings import Settings

if TYPE_CHECKING:
    import uuid

    from kpictl.services.maintenance.retention import RetentionPolicy, RetentionResult

app = typer.Typer()

HELP = """Delete old KPI snapshots (by calculated_at, per level) and old job rows (by created_at).

Rows older than N days (calculated_at < now - N days) go, in batches of --batch-size rows, each
batch its own short transaction. Job rows are deleted only when finished (completed, failed,
cancelled, abandoned): running or pending jobs are never deleted. kpi_history and the source
tables are never touched. A run is recorded as a `retention` job (counts in its metadata);
--dry-run only counts and writes nothing, not even the job row. One run at a time: exit 75 when
another retention run holds the retention lock (the pipeline lock is not needed).

Examples:

    kpictl retention --dry-run                   # what would go, per level

    kpictl retention                             # the default ages below

    kpictl retention --run-days 30 --vacuum      # then VACUUM ANALYZE

    kpictl retention --batch-size 1000 -q        # smaller batches, quiet
"""

DryRunFlag = Annotated[
    bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
]
VacuumFlag = Annotated[
    bool, typer.Option("--vacuum", help="VACUUM ANALYZE the tables that lost rows.")
]


@kpictl_command(app, "retention", help=HELP)
def retention(
    settings: Settings,
    dry_run: DryRunFlag = False,
    run_days: RunDaysOption = None,
    product_days: ProductDaysOption = None,
    factory_days: FactoryDaysOption = None,
    jobs_days: JobsDaysOption = None,
    batch_size: BatchSizeOption = "10000",
    vacuum: VacuumFlag = False,
    format: TableFormatOption = TableFormat.table,
) -> int:
    days = {"run_days": run_days, "product_days": product_days}
    days |= {"factory_days": factory_days, "jobs_days": jobs_days}
    policy = _policy(settings, days, batch_size)
    result, job_id = _run(settings, policy, dry_run=dry_run, vacuum=vacuum, format=format)
    _show(result, format)
    _log_summary(result, job_id)
    return 0


def _policy(settings: Settings, flags: dict[str, str | None], batch_size: str) -> "RetentionPolicy":
    """The ages per target (each from its flag, variable, config file or default) and the batch
    size."""
    from kpictl.cli.options import whole_number
    from kpictl.services.maintenance.retention import MAX_BATCH_SIZE, MAX_DAYS, RetentionPolicy

    days: dict[str, int] = {}
    for name, flag in flags.items():
        chosen = settings.setting(f"retention.{name}", flag)
        days[name] = whole_number(str(chosen.value), chosen.name, within=(1, MAX_DAYS))
    size = whole_number(batch_size, "--batch-size", within=(1, MAX_BATCH_SIZE))
    return RetentionPolicy(**days, batch_size=size)


def _run(
    settings: Settings, policy: "RetentionPolicy", *, dry_run: bool, vacuum: bool, format: Format
) -> "tuple[RetentionResult, uuid.UUID | None]":
    """The retention job, one progress bar per target on a terminal (none for --dry-run). A
    run that fails, loses its lock or is stopped first shows what it deleted so far."""
    from kpictl.cli import running
    from kpictl.cli.database import open_database
    from kpictl.services.maintenance import retention as service

    def show_partial(partial: Any) -> None:  # json: the failure's document only
        if isinstance(partial, service.RetentionResult) and partial.targets and format != "json":
            _show(partial, format)

    engine = open_database(settings).engine
    metadata = running.job_metadata(settings)
    with running.long_job(settings, show_partial, progress=not dry_run) as (stop, progress):
        return service.run_retention(
            engine,
            policy,
            dry_run=dry_run,
            vacuum=vacuum,
            job_meta=metadata,
            on_batch=_on_batch(progress),
            stop=stop,
        )


def _on_batch(progress: Any) -> Callable[[str, int, int], None] | None:
    """One bar per target on the progress display (a terminal's only); else no callback."""
    from kpictl.cli.progress import RichProgress

    if not isinstance(progress, RichProgress):
        return None
    started: set[str] = set()

    def on_batch(target: str, rows: int, planned: int) -> None:
        if target not in started:
            started.add(target)
            progress.start(f"deleting {target}", planned or None)
        progress.advance(rows)

    return on_batch


def _show(result: Any, format: Format) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import retention as render

    output.emit_rows(format, render.columns(result), render.rows(result))


def _log_summary(result: Any, job_id: Any) -> None:
    log = logging.getLogger(__name__)
    verb = "would delete" if result.dry_run else "deleted"
    counts = ", ".join(f"{t.target} {t.deleted}" for t in result.targets)
    log.info("Retention %s: %s%s", verb, counts, f" (job {job_id})" if job_id else "")
    if result.vacuumed:
        log.info("VACUUM ANALYZE done: %s", ", ".join(result.vacuumed))
