"""Retention: delete old KPI snapshots per level and old job rows, in short bounded batches.

On the partitioned `kpi_snapshots` (revision 0008) a partition whose rows are all past the
cut-off is dropped whole first (`kpictl/db/partitions.py::expired`: no WAL record per row, no
dead tuples to vacuum); only the rows of partitions that straddle the cut-off (and of the
default partitions) are deleted in batches. The rows of a dropped partition are reported as the
planner's estimate (`pg_class.reltuples`): counting them would cost what dropping saves.

Each batch is one `DELETE ... WHERE id IN (SELECT id ... LIMIT :batch FOR UPDATE SKIP LOCKED)`
in its own transaction, so no statement holds row locks for long and a concurrent aggregate is
never blocked behind a large delete. Only `kpi_snapshots` and `kpi_aggregation_jobs` are touched:
never `kpi_history`, never a source table. Job rows are deleted only in a terminal status
(completed, failed, cancelled, abandoned): a `running` or `pending` job is never removed, however
old, and neither is the retention run's own row.

One retention run at a time: it holds an advisory lock of its own (not the pipeline's, so it
never delays an aggregate), and a retention job left `running` by a process that died is marked
`abandoned` by the next retention run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    select,
    text,
)

from kpictl import _testing
from kpictl.db import partitions
from kpictl.db.schema import kpi_aggregation_jobs as jobs
from kpictl.db.schema import kpi_snapshots as snapshots
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs.runner import Job, JobSpec, JobWork, RowEnd, run_job

RETENTION_LOCK_KEY = locks.RETENTION.key
DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 1_000_000
MAX_DAYS = 36_500
TERMINAL_JOB_STATUSES = ("completed", "failed", "cancelled", "abandoned")
# Deletion targets in the order they run: the three snapshot levels, then job rows.
TARGETS = ("run", "product", "factory", "jobs")
TABLE_OF_TARGET = {
    "run": "kpi_snapshots",
    "product": "kpi_snapshots",
    "factory": "kpi_snapshots",
    "jobs": "kpi_aggregation_jobs",
}


@dataclass(frozen=True)
class RetentionPolicy:
    """Ages in whole days per target, and the batch size."""

    run_days: int = 90
    product_days: int = 90
    factory_days: int = 730
    jobs_days: int = 90
    batch_size: int = DEFAULT_BATCH_SIZE

    def days(self, target: str) -> int:
        return int(getattr(self, f"{target}_days"))


@dataclass
class TargetResult:
    target: str  # run / product / factory / jobs
    table: str
    days: int
    cutoff: datetime
    deleted: int = 0  # rows deleted, or that would be deleted with dry_run
    batches: int = 0  # DELETE statements executed
    partitions: list[str] = field(default_factory=list)  # dropped (or that would be) whole
    partition_rows: int = 0  # their rows, as estimated (pg_class.reltuples)


@dataclass
class RetentionResult:
    dry_run: bool
    now: datetime | None = None
    targets: list[TargetResult] = field(default_factory=list)
    vacuumed: list[str] = field(default_factory=list)

    @property
    def snapshots_deleted(self) -> int:
        return sum(t.deleted for t in self.targets if t.table == "kpi_snapshots")

    def summary(self) -> dict[str, Any]:
        """Per-target counts for the job row's metadata."""
        return {
            "dry_run": self.dry_run,
            "snapshots_deleted": self.snapshots_deleted,
            "deleted": {t.target: t.deleted for t in self.targets},
            "batches": {t.target: t.batches for t in self.targets},
            "cutoffs": {t.target: t.cutoff for t in self.targets},
            "partitions_dropped": {t.target: t.partitions for t in self.targets if t.partitions},
            "partition_rows_estimated": {
                t.target: t.partition_rows for t in self.targets if t.partitions
            },
            "vacuumed": self.vacuumed,
        }


def make_policy(**ages_and_batch_size: int) -> RetentionPolicy:
    """The default policy, with some ages (`run_days=30`, ...) or the batch size changed. The
    values are checked where they are typed (`kpictl retention`'s options)."""
    return RetentionPolicy(**ages_and_batch_size)


def database_now(engine: Engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(select(func.now())).scalar_one()


def _condition(
    target: str, cutoff: datetime, own_job_id: uuid.UUID | None
) -> tuple[Table, ColumnElement[bool]]:
    if target == "jobs":
        condition = and_(jobs.c.created_at < cutoff, jobs.c.status.in_(TERMINAL_JOB_STATUSES))
        if own_job_id is not None:
            condition = and_(condition, jobs.c.id != own_job_id)
        return jobs, condition
    return snapshots, and_(snapshots.c.level == target, snapshots.c.calculated_at < cutoff)


def count_expired(conn: Connection, target: str, cutoff: datetime) -> int:
    table, condition = _condition(target, cutoff, None)
    return conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()


def delete_batch(
    conn: Connection, target: str, cutoff: datetime, batch_size: int, own_job_id: uuid.UUID | None
) -> int:
    """One bounded DELETE; rows locked by another session are skipped, not waited for."""
    table, condition = _condition(target, cutoff, own_job_id)
    ids = (
        select(table.c.id)
        .where(condition)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount


def plan(engine: Engine, policy: RetentionPolicy, now: datetime) -> list[TargetResult]:
    """The targets with their cutoffs (`now - days`), how many rows are past them (exactly) and
    which partitions would go whole."""
    results = []
    with engine.connect() as conn:
        for target in TARGETS:
            result = _target(policy, target, now)
            result.deleted = count_expired(conn, target, result.cutoff)
            if target in partitions.LEVELS:
                whole = partitions.expired(conn, target, result.cutoff)
                result.partitions = [partition.name for partition in whole]
                result.partition_rows = sum(partition.rows for partition in whole)
            results.append(result)
    return results


def _target(policy: RetentionPolicy, target: str, now: datetime) -> TargetResult:
    days = policy.days(target)
    return TargetResult(target, TABLE_OF_TARGET[target], days, now - timedelta(days=days))


def drop_expired_partitions(conn: Connection, done: TargetResult, stop: Any = None) -> None:
    """Drop the partitions of `done.target` whose rows are all past its cut-off, in one
    transaction (one short ACCESS EXCLUSIVE lock on the level's table, one commit), and make
    the partitions ahead of need while here."""
    if stop is not None:
        stop.check()
    with conn.begin():
        if done.target == partitions.LEVELS[0]:  # once a run, with the first level
            now = conn.execute(select(func.now())).scalar_one()
            partitions.ensure_around(conn, now, now, now)
        whole = partitions.expired(conn, done.target, done.cutoff)
        partitions.drop(conn, [partition.name for partition in whole])
    done.partitions = [partition.name for partition in whole]
    done.partition_rows = sum(partition.rows for partition in whole)


def apply_retention(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    vacuum: bool = False,
    own_job_id: uuid.UUID | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    into: RetentionResult | None = None,
    stop: Any = None,
) -> RetentionResult:
    """Delete (or, with `dry_run`, count) rows older than the policy's ages.

    `now` defaults to the database's clock. Each batch commits on its own; `on_batch(target,
    rows, planned)` is called after each one (for a progress bar; `planned` is the count found
    before deleting). `vacuum` runs VACUUM ANALYZE on the
    tables that lost rows, outside any transaction. Counts accumulate in `into` when given, so
    a caller still has them after an error. `stop` (a `kpictl.services.jobs.stop.StopRequest`) is
    checked before each batch, and the running batch's connection is registered with it so that
    a batch still running after the grace period is cancelled server-side.
    """
    now = now or database_now(engine)
    result = into if into is not None else RetentionResult(dry_run=dry_run)
    result.now, result.dry_run = now, dry_run
    if dry_run:
        result.targets = plan(engine, policy, now)
        return result
    with engine.connect() as conn:  # one connection, a transaction per drop and per batch
        for name in TARGETS:
            done = _target(policy, name, now)
            result.targets.append(done)
            if name in partitions.LEVELS:
                drop_expired_partitions(conn, done, stop)
            _delete_in_batches(conn, done, policy.batch_size, own_job_id, on_batch, stop)
    if vacuum:
        touched = sorted({t.table for t in result.targets if t.deleted})
        vacuum_analyze(engine, touched, stop=stop)
        result.vacuumed = touched
    return result


def _delete_in_batches(
    conn: Connection,
    done: TargetResult,
    batch_size: int,
    own_job_id: uuid.UUID | None,
    on_batch: Callable[[str, int, int], None] | None,
    stop: Any,
) -> None:
    """The rows past the cut-off that no dropped partition took, a batch a transaction. A level
    is trimmed partition by partition (those holding such rows, found one at a time): a DELETE
    planned over one partition, not over all of them."""
    planned = 0
    if on_batch is not None:  # a progress bar's total: what is left to delete in batches
        with conn.begin():
            planned = count_expired(conn, done.target, done.cutoff)
    finished: list[str] = []
    while True:
        holder = None
        if done.target in partitions.LEVELS:
            with conn.begin():
                holder = conn.execute(
                    EXPIRED_HOLDER, {"level": done.target, "cutoff": done.cutoff, "done": finished}
                ).scalar()
            if holder is None:
                return
        while True:
            if stop is not None:
                stop.check()
            with conn.begin():
                rows = _one_batch(conn, done, batch_size, own_job_id, holder, stop)
            done.batches += 1
            done.deleted += rows
            if on_batch and rows:
                on_batch(done.target, rows, planned)
            if rows < batch_size:
                break
        if holder is None:
            return
        finished.append(holder)


# The table (a partition, or the table itself when not partitioned) holding a row of the level
# past the cut-off, other than those already trimmed: one index probe per partition.
EXPIRED_HOLDER = text(
    """
SELECT tableoid::regclass::text FROM kpi_snapshots
WHERE level = :level AND calculated_at < :cutoff
  AND NOT (tableoid::regclass::text = ANY(CAST(:done AS text[])))
LIMIT 1
"""
)


def _one_batch(
    conn: Connection,
    done: TargetResult,
    batch_size: int,
    own_job_id: uuid.UUID | None,
    holder: str | None,
    stop: Any,
) -> int:
    if stop is not None:
        stop.watch(conn.connection.dbapi_connection)
    try:
        _testing.pause(conn, "retention")  # KPICTL_DEBUG_STEP_SLEEP="retention:N"
        if holder is None:
            return delete_batch(conn, done.target, done.cutoff, batch_size, own_job_id)
        return delete_partition_batch(conn, holder, done.target, done.cutoff, batch_size)
    finally:
        if stop is not None:
            stop.unwatch()


def delete_partition_batch(
    conn: Connection, holder: str, level: str, cutoff: datetime, batch_size: int
) -> int:
    """One bounded DELETE of a level's expired rows in one table of kpi_snapshots (a partition
    named by the catalog); rows locked by another session are skipped."""
    if not (holder == partitions.TABLE or holder.startswith(f"{partitions.TABLE}_")):
        raise ValueError(f"not a table of {partitions.TABLE}: {holder!r}")
    statement = text(
        f"DELETE FROM {holder} WHERE id IN (SELECT id FROM {holder} "
        "WHERE level = :level AND calculated_at < :cutoff "
        "LIMIT :batch_size FOR UPDATE SKIP LOCKED)"
    )
    parameters = {"level": level, "cutoff": cutoff, "batch_size": batch_size}
    return conn.execute(statement, parameters).rowcount


def vacuum_analyze(engine: Engine, tables: list[str], *, stop: Any = None) -> None:
    """VACUUM cannot run inside a transaction block: use an autocommit connection."""
    allowed = set(TABLE_OF_TARGET.values())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if stop is not None:
            stop.watch(conn.connection.dbapi_connection)
        try:
            for table in tables:
                if stop is not None:
                    stop.check()
                # Identifiers cannot be bound; only a name of the fixed set above reaches SQL.
                if table not in allowed:
                    raise ValueError(f"not a table retention may vacuum: {table!r}")
                conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        finally:
            if stop is not None:
                stop.unwatch()


class _RetentionWork(JobWork[RetentionResult]):
    """Retention as a `retention` job (`jobs.runner`): every batch commits on the guarded engine
    and counts into one result, also the partial result after a failure."""

    def __init__(
        self,
        policy: RetentionPolicy,
        vacuum: bool,
        now: datetime | None,
        on_batch: Callable[[str, int, int], None] | None,
    ):
        self.policy, self.vacuum, self.now, self.on_batch = policy, vacuum, now, on_batch
        self.result = RetentionResult(dry_run=False)
        self.job_id: uuid.UUID | None = None

    def run(self, job: Job) -> RetentionResult:
        self.job_id = job.id
        return apply_retention(
            job.engine,
            self.policy,
            now=self.now,
            vacuum=self.vacuum,
            own_job_id=job.id,
            on_batch=self.on_batch,
            into=self.result,
            stop=job.stop,
        )

    def partial(self) -> RetentionResult:
        return self.result

    def row(self, result: RetentionResult) -> RowEnd:
        return RowEnd(metadata=result.summary())


def run_retention(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    vacuum: bool = False,
    now: datetime | None = None,
    job_meta: dict[str, Any] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    stop: Any = None,
) -> tuple[RetentionResult, uuid.UUID | None]:
    """`apply_retention` recorded as a `retention` job row (counts in its metadata).

    A dry run writes nothing at all, not even a job row. An error or interruption marks the job
    `failed` / `cancelled` with what was deleted so far (every finished batch stays committed),
    then propagates; a stop request surfaces as `Interrupted` (exit 143 / 130). The lifecycle
    (lock, abandoned predecessor, job row, finish) is `jobs.runner.run_job`'s.
    """
    if dry_run:
        return apply_retention(engine, policy, now=now, dry_run=True), None
    metadata = dict(job_meta or {})
    metadata["policy"] = {f"{t}_days": policy.days(t) for t in TARGETS}
    metadata["policy"]["batch_size"] = policy.batch_size
    work = _RetentionWork(policy, vacuum, now, on_batch)
    result = run_job(engine, JobSpec(locks.RETENTION, "retention", metadata), work, stop=stop)
    return result, work.job_id
