"""`kpictl demo`: a sample factory, end to end, on the target database.

Creates the source tables if absent, migrates, loads the deterministic sample of
`kpictl.sample` (re-running adds nothing; `reset` removes the sample first), aggregates the
last week, backfills the sample's days in daily buckets and fills the tenants' KPI history.
Every step is the same service the real commands call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import Engine, text

from kpictl import kpis as registry
from kpictl import sample
from kpictl.services.history.fill import FillOptions, fill_with_job
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import periods, steps
from kpictl.services.pipeline import run as pipeline
from kpictl.services.reports import freshness, latest
from kpictl.services.schema import migrate

log = logging.getLogger(__name__)
SAMPLE_DAYS = 14
SAMPLE_WEEKS = 12
STEPS = ("migrate", "sample", "aggregate", "backfill", "history")


@dataclass
class DemoResult:
    sample_rows: dict[str, int]
    reset_rows: dict[str, int] = field(default_factory=dict)
    aggregate_snapshots: int = 0
    backfill_buckets: int = 0
    backfill_skipped: int = 0
    history_filled: int = 0
    history_rows: int = 0
    jobs: list[str] = field(default_factory=list)

    @property
    def sample_rows_loaded(self) -> int:
        return sum(self.sample_rows.values())


@dataclass(frozen=True)
class FactoryOverview:
    """What the demo shows at the end: the latest factory KPIs and how fresh they are."""

    values: list[latest.KpiValue]
    freshness: freshness.FreshnessReport


def run_demo(
    engine: Engine,
    *,
    reset: bool,
    metadata: dict[str, Any],
    stop: StopRequest,
    step_done: Any = None,
    seed: int = 42,
) -> DemoResult:
    def done(step: str) -> None:
        stop.check()
        if step_done is not None:
            step_done(step)

    migrate.upgrade(engine, with_sources=True)
    done("migrate")
    with engine.begin() as conn:
        removed = sample.reset(conn) if reset else {}
        clock = conn.execute(
            text("SELECT now()")
        ).scalar_one()  # the database's clock, as aggregate
        now = clock.replace(minute=0, second=0, microsecond=0)
        loaded = sample.generate(conn, seed=seed, days=SAMPLE_DAYS, weeks=SAMPLE_WEEKS, now=now)
    log.info(
        "Sample factory: %s",
        ", ".join(f"{rows} {table}" for table, rows in loaded.items() if rows) or "already loaded",
    )
    result = DemoResult(loaded, removed)
    done("sample")

    options = steps.PipelineOptions()
    week = periods.aligned_period(clock, 168, 300)
    aggregated = pipeline.aggregate(engine, week, metadata=metadata, options=options, stop=stop)
    result.aggregate_snapshots = aggregated.snapshots_created
    result.jobs.append(aggregated.job_id)
    done("aggregate")

    utc = periods.zone("UTC")
    since = (now - timedelta(days=SAMPLE_DAYS)).astimezone(UTC)
    buckets = periods.buckets(since, periods.current_bucket_end(now, "day", utc), "day", utc, now)
    backfilled = pipeline.backfill(
        engine, buckets, force=reset, metadata=metadata, options=options, stop=stop, now=now
    )
    result.backfill_buckets = len(backfilled.periods)
    result.backfill_skipped = backfilled.skipped_buckets
    result.jobs.append(backfilled.job_id)
    done("backfill")

    # Every report week of the sample, so that `history export` has a history to show.
    weeks_back = FillOptions(since=(now - timedelta(weeks=SAMPLE_WEEKS + 1)).date())
    filled = fill_with_job(engine, weeks_back, metadata=metadata)
    result.history_filled = filled.result.get("ok", 0)
    result.history_rows = filled.rows_written
    done("history")
    return result


def factory_overview(
    engine: Engine, *, warn_after_seconds: float, error_after_seconds: float
) -> FactoryOverview:
    """The latest value and the freshness of every factory KPI."""
    with engine.connect() as connection:
        values = latest.latest_values(connection, level="factory")
        report = freshness.check_freshness(
            connection,
            list(registry.at_level("factory")),
            level="factory",
            warn_after_seconds=warn_after_seconds,
            error_after_seconds=error_after_seconds,
        )
    return FactoryOverview(values, report)
