"""`kpictl retention`: delete old snapshots per level and old job rows, in bounded batches."""

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    BatchSizeOption,
    FactoryDaysOption,
    JobsDaysOption,
    ProductDaysOption,
    RunDaysOption,
    TableFormat,
    TableFormatOption,
)
from kpictl.settings import Settings

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

    kpictl retention --batch-size 1000 -q        # smaller batches, only errors on stderr
"""

COLUMNS = ["target", "table", "older_than_days", "cutoff", "deleted"]
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
    run_days: RunDaysOption = "90",
    product_days: ProductDaysOption = "90",
    factory_days: FactoryDaysOption = "730",
    jobs_days: JobsDaysOption = "90",
    batch_size: BatchSizeOption = "10000",
    vacuum: VacuumFlag = False,
    format: TableFormatOption = TableFormat.table,
) -> int:
    from kpictl.cli.database import open_database
    from kpictl.cli.signals import graceful_stop
    from kpictl.errors import KpictlError
    from kpictl.redact import secrets_of_url
    from kpictl.services.jobs.rows import job_metadata
    from kpictl.services.maintenance import retention as service

    policy = _policy(run_days, product_days, factory_days, jobs_days, batch_size)
    database = open_database(settings)
    meta = job_metadata(settings.argv, secrets_of_url(database.url))
    try:
        with (
            graceful_stop(settings.stop_grace_seconds) as stop,
            _batch_progress(enabled=not (dry_run or settings.quiet)) as on_batch,
        ):
            result, job_id = service.run_retention(
                database.engine,
                policy,
                dry_run=dry_run,
                vacuum=vacuum,
                job_meta=meta,
                on_batch=on_batch,
                stop=stop,
            )
    except KpictlError as exc:  # failed, lost its lock or stopped: what was deleted so far
        if isinstance(exc.partial, service.RetentionResult) and exc.partial.targets:
            _emit(exc.partial, format.value)
        raise
    _emit(result, format.value)
    _log_summary(result, job_id)
    return 0


def _policy(run_days: str, product_days: str, factory_days: str, jobs_days: str, batch_size: str):
    from kpictl.cli.options import whole_number
    from kpictl.services.maintenance.retention import MAX_BATCH_SIZE, MAX_DAYS, RetentionPolicy

    def days(value: str, option: str) -> int:
        return whole_number(value, option, within=(1, MAX_DAYS))

    return RetentionPolicy(
        run_days=days(run_days, "--run-days"),
        product_days=days(product_days, "--product-days"),
        factory_days=days(factory_days, "--factory-days"),
        jobs_days=days(jobs_days, "--jobs-days"),
        batch_size=whole_number(batch_size, "--batch-size", within=(1, MAX_BATCH_SIZE)),
    )


def _emit(result: Any, fmt: str) -> None:
    from kpictl.cli import output

    rows = [[t.target, t.table, t.days, t.cutoff, t.deleted] for t in result.targets]
    columns = COLUMNS if not result.dry_run else [*COLUMNS[:-1], "would_delete"]
    output.emit_rows(fmt, columns, rows)


@contextlib.contextmanager
def _batch_progress(*, enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """One bar per target on the shared progress display (terminal only); else no callback."""
    from kpictl.cli.progress import RichProgress, progress_bar

    with progress_bar(quiet=not enabled) as progress:
        if not isinstance(progress, RichProgress):
            yield None
            return
        started: set[str] = set()

        def on_batch(target: str, rows: int, planned: int) -> None:
            if target not in started:
                started.add(target)
                progress.start(f"deleting {target}", planned or None)
            progress.advance(rows)

        yield on_batch


def _log_summary(result: Any, job_id: Any) -> None:
    log = logging.getLogger(__name__)
    verb = "would delete" if result.dry_run else "deleted"
    counts = ", ".join(f"{t.target} {t.deleted}" for t in result.targets)
    log.info("Retention %s: %s%s", verb, counts, f" (job {job_id})" if job_id else "")
    if result.vacuumed:
        log.info("VACUUM ANALYZE done: %s", ", ".join(result.vacuumed))
