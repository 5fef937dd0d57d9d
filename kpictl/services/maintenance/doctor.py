"""`kpictl doctor`: everything an operator checks first, one verdict per line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from kpictl.db import migrations, partitions
from kpictl.db.schema import HISTORY_SOURCES, SOURCE_COLUMNS, TYPE_FAMILIES
from kpictl.errors import DatabaseUnavailable, classify_database_error
from kpictl.services.jobs.lock import HISTORY_FILL, PIPELINE, RETENTION, lock_holder, lock_waiters
from kpictl.services.schema import migrate
from kpictl.services.schema.gate import schema_problem

MIN_SERVER_VERSION = 150000  # UNIQUE NULLS NOT DISTINCT (the snapshot key) needs PostgreSQL 15

OK, WARN, FAIL = "ok", "warn", "fail"
LOCK_HELD_WARN_SECONDS = 3600  # an aggregate holding the lock this long is probably stuck


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    reachable: bool = True
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def healthy(self) -> bool:
        return self.reachable and all(check.status != FAIL for check in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))


# Extra checks registered by other areas (the pipeline adds its lock and last job).
EXTRA_CHECKS: list[Callable[[Connection, DoctorReport], None]] = []


@dataclass(frozen=True)
class ReadReplica:
    """The read URL's database (--read-url), as doctor shows and checks it."""

    engine: Engine
    source: str
    shown_url: str


REPLICA_LAG_WARN_SECONDS = 60.0
REPLICA_STATE = text(
    """
SELECT pg_is_in_recovery() AS standby,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END AS lag_seconds,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END AS replayed
"""
)


def run_checks(
    engine: Engine,
    *,
    source: str,
    shown_url: str,
    settings: Sequence[tuple[str, str]] = (),
    replica: ReadReplica | None = None,
) -> DoctorReport:
    """Every check, one line each; the read replica's when one is configured; then `settings`
    as given ((name, "value (from origin)"), `config.describe`), whether the database could be
    reached or not."""
    report = DoctorReport()
    report.add("database", OK, f"{shown_url} (from {source})")
    try:
        with engine.connect() as connection:
            report.add("reachable", OK, "connected")
            _check_server(connection, report)
            at_head = _check_migrations(connection, report)
            _check_sources(connection, report)
            if at_head:
                _check_views(connection, report)
                _check_snapshot_key(connection, report)
                _check_partitions(connection, report)
                _check_history_security(connection, report)
            _check_source_indexes(connection, report)
            _check_pipeline_lock(connection, report)
            _check_last_job(connection, report)
            _check_orphaned_jobs(connection, report)
            for extra in EXTRA_CHECKS:
                extra(connection, report)
    except Exception as exc:
        error = classify_database_error(exc, connecting=not report.checks[1:])
        if error is None:
            raise
        if isinstance(error, DatabaseUnavailable) and len(report.checks) == 1:
            report.reachable = False
            report.add("reachable", FAIL, error.message)
        else:
            report.add("query", FAIL, error.message)
    if replica is not None:
        check_read_replica(engine, replica, report)
    for name, shown in settings:
        report.add(f"setting {name}", OK, shown)
    return report


def check_read_replica(primary: Engine, replica: ReadReplica, report: DoctorReport) -> None:
    """Reachable, a standby, and how far behind the primary: its replay lag in seconds (0 when
    it has replayed all it received) and the WAL bytes between the primary and its replay."""
    where = f"{replica.shown_url} (from {replica.source})"
    try:
        with replica.engine.connect() as connection:
            state = connection.execute(REPLICA_STATE).one()
    except Exception as exc:
        error = classify_database_error(exc, connecting=True)
        if error is None:
            raise
        report.add("read replica", FAIL, f"{where}: {error.message}")
        return
    if not state.standby:
        report.add("read replica", WARN, f"{where}: not a standby (pg_is_in_recovery() is false)")
        return
    behind = _bytes_behind(primary, state.replayed)
    lag = float(state.lag_seconds or 0)
    status = OK if lag <= REPLICA_LAG_WARN_SECONDS else WARN
    report.add("read replica", status, f"{where}: standby, lag {lag:.1f} s{behind}")


def _bytes_behind(primary: Engine, replayed: str) -> str:
    try:
        with primary.connect() as connection:
            lsn_diff = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:lsn AS pg_lsn))"
            behind = connection.execute(text(lsn_diff), {"lsn": replayed}).scalar_one()
    except Exception:  # the primary's own checks above say why it cannot be read
        return ""
    return f", {int(behind):,} bytes of WAL behind the primary"


def _check_partitions(connection: Connection, report: DoctorReport) -> None:
    """The partitioned kpi_snapshots (revision 0008): today's run partition exists, and the
    default partitions are empty (rows there mean partitions were not made in time)."""
    if not partitions.is_partitioned(connection):
        return
    today = partitions.containing("run", connection.execute(text("SELECT now()")).scalar_one())
    made = connection.execute(text("SELECT to_regclass(:n)"), {"n": today.name}).scalar()
    stray = {level: rows for level, rows in partitions.rows_in_defaults(connection).items() if rows}
    if stray:
        listed = ", ".join(f"{level} {rows:,}" for level, rows in stray.items())
        report.add(
            "partitions",
            WARN,
            f"default partitions hold rows ({listed}): their periods have no partition yet; "
            "`kpictl aggregate`, `backfill` or `retention` run by the table's owner moves them",
        )
    elif made is None:
        report.add("partitions", WARN, f"{today.name} does not exist: run `kpictl aggregate`")
    else:
        report.add("partitions", OK, f"partitioned by level and period_end; {today.name} ready")


def _check_server(connection: Connection, report: DoctorReport) -> None:
    version_num = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    version = connection.execute(text("SHOW server_version")).scalar_one()
    if version_num < MIN_SERVER_VERSION:
        report.add("server version", FAIL, f"PostgreSQL {version}; kpictl needs 15 or later")
    else:
        report.add("server version", OK, f"PostgreSQL {version}")


def _check_migrations(connection: Connection, report: DoctorReport) -> bool:
    """The schema gate's verdict (what every pipeline command would say about this database);
    returns whether the database is at head (the checks of head's objects apply)."""
    problem = schema_problem(connection)
    if problem is None:
        report.add("migrations", OK, f"at head {migrations.head_revision()}")
        return True
    report.add("migrations", FAIL, problem.message)
    return False


# What `kpictl migrate` puts back at head (kpictl.services.schema.migrate.repair_schema).
REPAIR = "run `kpictl migrate` (as the owner of kpictl's tables): it puts it back"


def _check_views(connection: Connection, report: DoctorReport) -> None:
    """Both materialized views, each with the unique index REFRESH ... CONCURRENTLY needs."""
    problems = []
    for view, (index, _sql) in migrate.VIEW_INDEXES.items():
        if _regclass(connection, view) is None:
            problems.append(f"{view} missing")
        elif _regclass(connection, index) is None:
            problems.append(f"{view} has no unique index {index}")
    if problems:
        report.add(
            "materialized views",
            FAIL,
            "; ".join(problems) + f": aggregate cannot refresh it; {REPAIR}",
        )
    else:
        report.add("materialized views", OK, ", ".join(migrate.VIEW_INDEXES))


def _check_snapshot_key(connection: Connection, report: DoctorReport) -> None:
    present = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = :name "
            "AND conrelid = 'kpi_snapshots'::regclass AND contype = 'u')"
        ),
        {"name": migrate.SNAPSHOT_KEY},
    ).scalar_one()
    if present:
        report.add("snapshot key", OK, f"{migrate.SNAPSHOT_KEY} present")
    else:
        report.add(
            "snapshot key",
            FAIL,
            f"unique key {migrate.SNAPSHOT_KEY} of kpi_snapshots missing: every upsert of the "
            f"pipeline fails and retries could duplicate rows; {REPAIR}",
        )


def _check_history_security(connection: Connection, report: DoctorReport) -> None:
    """kpi_history's row-level security: enabled, forced, exactly kpictl's policies."""
    enabled, forced = connection.execute(
        text(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE oid = 'kpi_history'::regclass"
        )
    ).one()
    present = set(
        connection.execute(
            text("SELECT polname FROM pg_policy WHERE polrelid = 'kpi_history'::regclass")
        ).scalars()
    )
    expected = set(migrate.history_policies())
    problems = []
    if not enabled:
        problems.append("row-level security disabled")
    if not forced:
        problems.append("not FORCE ROW LEVEL SECURITY (the owner bypasses the policies)")
    problems += [f"policy {name} missing" for name in sorted(expected - present)]
    unknown = sorted(present - expected)
    if problems:
        report.add("history security", FAIL, f"kpi_history: {'; '.join(problems)}; {REPAIR}")
    elif unknown:
        report.add(
            "history security",
            FAIL,
            f"kpi_history has policies kpictl does not know ({', '.join(unknown)}): policies "
            "are ORed, so they may widen tenant access; drop them (DROP POLICY ... ON "
            "kpi_history) unless you meant them",
        )
    else:
        report.add(
            "history security",
            OK,
            f"row-level security enabled and forced; policies {', '.join(sorted(expected))}",
        )


def _regclass(connection: Connection, name: str) -> str | None:
    return connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar()


def _check_source_indexes(connection: Connection, report: DoctorReport) -> None:
    """The pipeline's lookups rely on kpictl_* indexes on the source tables: a missing or
    INVALID one (a failed CREATE INDEX CONCURRENTLY) makes every cycle scan whole tables."""
    revision = migrations.current_revision(connection)
    if revision is None or revision not in migrations.known_revisions():
        return  # not migrated, or by a newer kpictl: the migrations check says what to run
    broken = migrate.invalid_or_missing_indexes(connection, revision)
    if broken:
        report.add(
            "source indexes",
            FAIL,
            "; ".join(f"{index.describe()} {state}" for index, state in broken)
            + ": aggregation scans whole tables; run `kpictl migrate`: it rebuilds them "
            "CONCURRENTLY",
        )
    else:
        count = len(migrations.source_index_definitions(revision))
        report.add("source indexes", OK, f"{count} kpictl_* indexes valid")


def _check_sources(connection: Connection, report: DoctorReport) -> None:
    rows = connection.execute(
        text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(:tables)"
        ),
        {"tables": list(SOURCE_COLUMNS)},
    ).all()
    actual: dict[str, dict[str, str]] = {}
    for table_name, column_name, data_type in rows:
        actual.setdefault(table_name, {})[column_name] = data_type
    for table_name, expected in SOURCE_COLUMNS.items():
        # History sources are optional: without them only `history fill` is unavailable.
        missing_status = WARN if table_name in HISTORY_SOURCES else FAIL
        columns = actual.get(table_name)
        if columns is None:
            report.add(f"source {table_name}", missing_status, "table missing")
            continue
        problems = []
        for column_name, family in expected.items():
            if column_name not in columns:
                problems.append(f"column {column_name} missing")
            elif family != "any" and columns[column_name] not in TYPE_FAMILIES[family]:
                problems.append(
                    f"column {column_name} is {columns[column_name]}, expected {family}"
                )
        if problems:
            report.add(f"source {table_name}", missing_status, "; ".join(problems))
        else:
            report.add(f"source {table_name}", OK, f"{len(expected)} columns present")


def _check_pipeline_lock(connection: Connection, report: DoctorReport) -> None:
    """Who holds the pipeline's advisory lock right now (`lock.lock_holder`). A session-level
    lock has no acquisition time; the holder's session start (kpictl holds the lock on a
    dedicated connection) is the best "since"."""
    holder = lock_holder(connection, PIPELINE)
    waiting = holder.waiting if holder else lock_waiters(connection, PIPELINE)
    waiters = f"; {waiting} waiting" if waiting else ""
    if holder is None:
        report.add("pipeline lock", OK, f"not held (no aggregate or backfill running){waiters}")
        return
    since = holder.backend_start.isoformat(timespec="seconds") if holder.backend_start else "?"
    client = f", client {holder.client}" if holder.client else ""
    detail = (
        f"held by pid {holder.backend_pid} ({holder.application_name or 'unknown application'}"
        f"{client}) since {since}{waiters}"
    )
    if holder.job_id:
        detail += f"; job {holder.job_id} (host {holder.host}, pid {holder.pid})"
    if holder.held_seconds > LOCK_HELD_WARN_SECONDS:
        report.add("pipeline lock", WARN, f"{detail}: held for {holder.held_seconds / 3600:.1f} h")
    else:
        report.add("pipeline lock", OK, detail)


def _check_last_job(connection: Connection, report: DoctorReport) -> None:
    """The newest kpi_aggregation_jobs row: warn when it failed, was abandoned, or there is none."""
    if connection.execute(text("SELECT to_regclass('kpi_aggregation_jobs')")).scalar() is None:
        report.add("last job", WARN, "no kpi_aggregation_jobs table (run `kpictl migrate`)")
        return
    job = connection.execute(
        text(
            "SELECT id, job_type, status, coalesce(started_at, created_at) AS started_at, "
            "duration_ms, snapshots_created, error FROM kpi_aggregation_jobs "
            "ORDER BY coalesce(started_at, created_at) DESC, created_at DESC, id LIMIT 1"
        )
    ).first()
    if job is None:
        report.add("last job", WARN, "no job has run yet (run `kpictl aggregate`)")
        return
    started = job.started_at.isoformat(timespec="seconds")
    detail = f"{job.job_type} {job.id} {job.status}, started {started}"
    if job.status == "completed":
        detail += f", {job.snapshots_created} snapshots in {job.duration_ms} ms"
    if job.error:
        detail += f": {job.error.strip().splitlines()[0][:200]}"
    report.add("last job", WARN if job.status in ("failed", "abandoned") else OK, detail)


# The command whose next run marks a job of that lock `abandoned` (kpictl/services/jobs/lock.py).
NEXT_RUN = {
    PIPELINE: "kpictl aggregate",
    RETENTION: "kpictl retention",
    HISTORY_FILL: "kpictl history fill",
}


def _check_orphaned_jobs(connection: Connection, report: DoctorReport) -> None:
    """A job row left `running` while nobody holds its kind's lock: its process died."""
    if _regclass(connection, "kpi_aggregation_jobs") is None:
        return
    orphans = []
    for lock, command in NEXT_RUN.items():
        if lock_holder(connection, lock) is not None:
            continue
        rows = connection.execute(
            text(
                "SELECT id, job_type, coalesce(started_at, created_at) AS started_at "
                "FROM kpi_aggregation_jobs WHERE status = 'running' AND job_type = ANY(:types) "
                "ORDER BY started_at"
            ),
            {"types": list(lock.job_types)},
        ).all()
        if rows and lock_holder(connection, lock) is None:  # not a job that just started
            oldest = rows[0].started_at.isoformat(timespec="seconds")
            orphans.append(
                f"{len(rows)} {'/'.join(lock.job_types)} job(s) `running` since {oldest} "
                f"(e.g. {rows[0].id}) but no process holds the {lock.name} lock: run `{command}` "
                "(it marks them abandoned)"
            )
    if orphans:
        report.add("running jobs", FAIL, "; ".join(orphans))
    else:
        report.add("running jobs", OK, "every running job has a live lock holder")
