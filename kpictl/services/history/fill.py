"""`kpictl history fill` (docs/spec/history.md §2): one `kpi_history` row per tenant and report week.

Every value is computed in one SQL query (`fill_sql.compute_sql`), PostgreSQL's
`round(numeric, 2)` included, so Python never touches a number.

Writing while row-level security is forced: `app.tenant` is set with `set_config(..., true)`
inside the transaction that writes the tenant's rows, and a statement can only write the rows of
the tenant so set. The all-tenants fill therefore works in *chunks* of tenants, one transaction
each, on its own connection (up to `concurrency` chunks at once):

1. one set-based query computes the rows of every tenant of the chunk into a temporary table
   (the source tables have no row-level security);
2. one psycopg pipeline sends, per tenant, `set_config('app.tenant', id, true)` followed by an
   upsert of that tenant's staged rows: thousands of statements, one network round trip;
3. commit.

When anything in a chunk fails, the chunk is rolled back and split in two, each half retried the
same way, down to single tenants, which are filled in a transaction of their own and report their
own error: one bad tenant costs about 2 x log2(chunk) extra passes, and every other tenant is
written. See docs/SECURITY.md.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError

from kpictl import _testing
from kpictl.db.schema import TENANT_SETTING, tenants
from kpictl.errors import LockLost, server_gone
from kpictl.services.history.fill_sql import (
    CREATE_STAGING,
    SET_TENANT_PG,
    STAGING_TABLE,
    UPSERT_STAGED_PG,
    compute_sql,
    upsert_sql,
)
from kpictl.services.history.tenants import Tenant, set_tenant
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs.progress import Progress
from kpictl.services.jobs.runner import Job, JobSpec, JobWork, RowEnd, run_job
from kpictl.services.jobs.stop import StopRequest

log = logging.getLogger(__name__)

NO_AVI = "NO_AVI"
FORBIDDEN = "FORBIDDEN"
INTERNAL_ERROR = "INTERNAL_ERROR"
MAX_CHUNK = 1000


@dataclass
class TenantOutcome:
    """What happened to one tenant: `code` is None (filled), NO_AVI, FORBIDDEN or INTERNAL_ERROR."""

    tenant: Tenant
    code: str | None = None
    as_of: date | None = None  # the newest week written
    rows: int = 0
    message: str | None = None

    def as_single_result(self) -> dict[str, Any]:
        """The one-tenant result document of docs/spec/history.md §2."""
        if self.code is None:
            assert self.as_of is not None  # a filled tenant has its newest week
            return {"ok": True, "tenant_id": str(self.tenant.id), "as_of": self.as_of.isoformat()}
        return {
            "ok": False,
            "tenant_id": str(self.tenant.id),
            "error": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class FillOptions:
    since: date | None = None
    until: date | None = None
    concurrency: int = 4

    @property
    def backfill(self) -> bool:
        return self.since is not None

    def parameters(self, tenant_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
        values: dict[str, Any] = {"tenant_ids": list(tenant_ids)}
        if self.since is not None:
            values["since"] = self.since
        if self.until is not None:
            values["until"] = self.until
        return values

    def compute(self) -> str:
        return compute_sql(backfill=self.backfill, since=self.since, until=self.until)

    def exists_sql(self) -> str:
        """Whether the tenant in `:tenant_ids` has a report in range."""
        return f"SELECT EXISTS ({self.compute()})"


def classify(exc: BaseException) -> tuple[str, str]:
    """(code, message) of a tenant's failure: FORBIDDEN when the database refused, else
    INTERNAL_ERROR (bad value, overflow, lost connection, ...)."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(original, "sqlstate", None) or ""
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    message = lines[0] if lines else type(original).__name__
    if sqlstate == "42501":
        return FORBIDDEN, message
    return INTERNAL_ERROR, message


def ends_the_fill(exc: BaseException, stop: StopRequest | None) -> bool:
    """A failure that is not one tenant's: the lock is lost, the server went away, or the stop
    request cancelled the statement. It ends the whole fill instead of failing a tenant."""
    return isinstance(exc, LockLost) or server_gone(exc) or (stop is not None and stop.requested)


@contextmanager
def _watched(conn: Connection, stop: StopRequest | None) -> Iterator[None]:
    """While the block runs, a stop request cancels `conn`'s statement after the grace period."""
    if stop is None:
        yield
        return
    dbapi_connection = conn.connection.dbapi_connection
    stop.watch(dbapi_connection)
    try:
        yield
    finally:
        stop.unwatch(dbapi_connection)


def fill_tenant(
    engine: Engine, tenant: Tenant, options: FillOptions, stop: StopRequest | None = None
) -> TenantOutcome:
    """Fill one tenant in a transaction of its own; a failure is returned, never raised (except
    one that ends the whole fill, see `ends_the_fill`)."""
    outcome = TenantOutcome(tenant)
    try:
        with engine.begin() as conn, _watched(conn, stop):
            set_tenant(conn, tenant.id)
            # NO_AVI is decided by reading, before writing: the same answer for a role that
            # may not write, as in the set-based path
            if not conn.execute(
                text(options.exists_sql()), options.parameters([tenant.id])
            ).scalar():
                outcome.code, outcome.message = NO_AVI, _no_avi_message(options)
                return outcome
            weeks = (
                conn.execute(
                    text(upsert_sql(f"({options.compute()}) AS computed") + " RETURNING as_of"),
                    options.parameters([tenant.id]),
                )
                .scalars()
                .all()
            )
            _testing.pause(conn, "fill")  # as after a chunk's writes (one tenant: no chunk)
    except Exception as exc:  # isolation: whatever broke, it broke this tenant only
        if ends_the_fill(exc, stop):
            raise
        outcome.code, outcome.message = classify(exc)
        return outcome
    if not weeks:  # the reports went away between the two statements
        outcome.code, outcome.message = NO_AVI, _no_avi_message(options)
        return outcome
    outcome.as_of, outcome.rows = max(weeks), len(weeks)
    return outcome


def fill_chunk_set_based(
    conn: Connection, chunk: Sequence[Tenant], options: FillOptions
) -> list[TenantOutcome]:
    """Fill a chunk of tenants in the caller's transaction: one query stages every row, one
    pipeline writes them tenant by tenant (app.tenant set before each tenant's upsert).
    Raises on any failure; the caller rolls back."""
    conn.execute(text(CREATE_STAGING))
    conn.execute(
        text(f"INSERT INTO {STAGING_TABLE} {options.compute()}"),
        options.parameters([tenant.id for tenant in chunk]),
    )
    conn.execute(text(f"CREATE INDEX ON {STAGING_TABLE} (tenant_id)"))
    conn.execute(text(f"ANALYZE {STAGING_TABLE}"))
    staged = {
        row.tenant_id: (row.newest, row.weeks)
        for row in conn.execute(
            text(
                f"SELECT tenant_id, max(as_of) AS newest, count(*) AS weeks "
                f"FROM {STAGING_TABLE} GROUP BY tenant_id"
            )
        )
    }
    _write_staged(conn, [tenant.id for tenant in chunk if tenant.id in staged])
    _testing.pause(conn, "fill")  # a test's KPICTL_DEBUG_STEP_SLEEP="fill:N"; no-op otherwise
    outcomes = []
    for tenant in chunk:
        if tenant.id in staged:
            newest, weeks = staged[tenant.id]
            outcomes.append(TenantOutcome(tenant, as_of=newest, rows=weeks))
        else:
            outcomes.append(TenantOutcome(tenant, code=NO_AVI, message=_no_avi_message(options)))
    return outcomes


def _write_staged(conn: Connection, tenant_ids: Sequence[uuid.UUID]) -> None:
    """Per tenant: set app.tenant, upsert its staged rows; all in one psycopg pipeline."""
    import psycopg

    driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
    first_error: psycopg.Error | None = None
    try:
        with driver.pipeline(), driver.cursor() as cursor:
            try:
                for tenant_id in tenant_ids:
                    cursor.execute(SET_TENANT_PG, (TENANT_SETTING, str(tenant_id)))
                    cursor.execute(UPSERT_STAGED_PG, (tenant_id,))
            except psycopg.Error as exc:
                # Leave the block normally: the pipeline then ends quietly ("pipeline aborted")
                # instead of logging a warning; the first error is the one that counts.
                first_error = exc
    except psycopg.Error as exc:
        raise first_error or exc from None
    if first_error is not None:
        raise first_error


def _no_avi_message(options: FillOptions) -> str:
    return "no AVI report in range" if options.backfill else "no AVI report"


def fill_chunk(
    engine: Engine, chunk: Sequence[Tenant], options: FillOptions, stop: StopRequest | None = None
) -> list[TenantOutcome]:
    """Set-based when it works; on failure split the chunk in two and retry each half, down to
    one tenant per transaction, so that only the failing tenants report an error. A failure
    that ends the fill (lock lost, server gone, stop) is raised instead, never retried."""
    if stop is not None:
        stop.check()
    if len(chunk) == 1:
        return [fill_tenant(engine, chunk[0], options, stop)]
    try:
        with engine.begin() as conn, _watched(conn, stop):
            return fill_chunk_set_based(conn, chunk, options)
    except Exception as exc:  # rolled back: find the culprits by halving
        if ends_the_fill(exc, stop):
            raise
        code, message = classify(exc)
        log.debug("chunk of %d tenants failed (%s: %s); splitting", len(chunk), code, message)
    middle = len(chunk) // 2
    return fill_chunk(engine, chunk[:middle], options, stop) + fill_chunk(
        engine, chunk[middle:], options, stop
    )


def list_tenants(engine: Engine) -> list[Tenant]:
    with engine.connect() as conn:
        rows = conn.execute(select(tenants.c.id, tenants.c.slug).order_by(tenants.c.slug))
        return [Tenant(row.id, row.slug) for row in rows]


def fill_all(
    engine: Engine,
    options: FillOptions,
    *,
    tenant_list: Sequence[Tenant] | None = None,
    progress: Callable[[int], None] | None = None,
    stop: StopRequest | None = None,
    committed: list[TenantOutcome] | None = None,
) -> list[TenantOutcome]:
    """Fill every tenant (or `tenant_list`), `options.concurrency` chunks at a time. After a stop
    request no new chunk starts, the running ones may finish and commit within the grace period
    (then their statements are cancelled and they roll back) and Interrupted is raised. The
    outcomes of every committed chunk are appended to `committed` as they commit, so a caller
    still knows what was written when the fill ends early."""
    everyone = list(tenant_list) if tenant_list is not None else list_tenants(engine)
    if not everyone:
        return []
    size = max(1, min(MAX_CHUNK, -(-len(everyone) // options.concurrency)))
    chunks = [everyone[start : start + size] for start in range(0, len(everyone), size)]
    guard = threading.Lock()

    def run(chunk: Sequence[Tenant]) -> list[TenantOutcome]:
        done = fill_chunk(engine, chunk, options, stop)
        if committed is not None:
            with guard:
                committed.extend(done)
        if progress:
            progress(len(chunk))
        return done

    pool = ThreadPoolExecutor(max_workers=min(options.concurrency, len(chunks)))
    try:
        futures = [pool.submit(run, chunk) for chunk in chunks]
        outcomes = [outcome for future in futures for outcome in future.result()]
    except BaseException:
        # the fill is over: chunks not started yet never start; running ones end on their own
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return outcomes


def summarize(outcomes: Sequence[TenantOutcome]) -> dict[str, Any]:
    """The all-tenants result document of docs/spec/history.md §2 (errors sorted by slug)."""
    errors = sorted(
        (outcome for outcome in outcomes if outcome.code not in (None, NO_AVI)),
        key=lambda outcome: outcome.tenant.slug,
    )
    return {
        "ok": sum(1 for outcome in outcomes if outcome.code is None),
        "skipped": sum(1 for outcome in outcomes if outcome.code == NO_AVI),
        "total": len(outcomes),
        "errors": [
            {
                "tenant_id": str(outcome.tenant.id),
                "slug": outcome.tenant.slug,
                "code": outcome.code,
                "message": outcome.message,
            }
            for outcome in errors
        ],
    }


def failed_of(outcomes: Sequence[TenantOutcome], *, single: bool) -> bool:
    """Whether the fill failed (its job row says so): a tenant errored (skips allowed), or the
    one tenant asked for had no report (NO_AVI). Its exit code is the CLI's decision."""
    failed = {FORBIDDEN, INTERNAL_ERROR} | ({NO_AVI} if single else set())
    return any(outcome.code in failed for outcome in outcomes)


@dataclass
class FillRun:
    """A finished fill: the outcomes, the result document and timings for the job row."""

    outcomes: list[TenantOutcome]
    result: dict[str, Any]
    failed: bool
    rows_written: int
    duration_ms: int


def run_fill(
    engine: Engine,
    options: FillOptions,
    *,
    tenants: Sequence[Tenant] | None = None,
    single: bool = False,
    progress: Callable[[int], None] | None = None,
    stop: StopRequest | None = None,
    committed: list[TenantOutcome] | None = None,
) -> FillRun:
    """Fill `tenants` (default: every tenant); `single` gives the one-tenant result document.
    Never raises for a tenant's failure (Interrupted after a stop request; LockLost or the
    database error when the lock or the server went away). `committed`: see `fill_all`."""
    started = time.monotonic()
    if single:
        if tenants is None or len(tenants) != 1:
            raise ValueError("a single-tenant fill needs exactly one tenant")
        outcomes = [fill_tenant(engine, tenants[0], options, stop)]
        if committed is not None:
            committed.extend(outcomes)
        if progress:
            progress(1)
        result = outcomes[0].as_single_result()
    else:
        outcomes = fill_all(
            engine, options, tenant_list=tenants, progress=progress, stop=stop, committed=committed
        )
        result = summarize(outcomes)
    return _fill_run(outcomes, result, single, started)


def _fill_run(
    outcomes: list[TenantOutcome], result: dict[str, Any], single: bool, started: float
) -> FillRun:
    return FillRun(
        outcomes=outcomes,
        result=result,
        failed=failed_of(outcomes, single=single),
        rows_written=sum(outcome.rows for outcome in outcomes if outcome.code is None),
        duration_ms=round((time.monotonic() - started) * 1000),
    )


class _FillWork(JobWork[FillRun]):
    """The fill as a `history_fill` job (`jobs.runner`): chunks commit on the guarded engine;
    the partial result is what the committed chunks wrote."""

    def __init__(
        self, engine: Engine, options: FillOptions, tenant: Tenant | None, progress: Progress
    ):
        self.engine, self.options, self.tenant, self.progress = engine, options, tenant, progress
        self.committed: list[TenantOutcome] = []
        self.started = time.monotonic()

    def run(self, job: Job) -> FillRun:
        self.started = time.monotonic()
        everyone = [self.tenant] if self.tenant else list_tenants(self.engine)
        self.progress.start("Filling history", len(everyone))
        return run_fill(
            job.engine,
            self.options,
            tenants=everyone,
            single=self.tenant is not None,
            progress=self.progress.advance,
            stop=job.stop,
            committed=self.committed,
        )

    def partial(self) -> FillRun:
        return _fill_run(
            list(self.committed), summarize(self.committed), self.tenant is not None, self.started
        )

    def row(self, result: FillRun) -> RowEnd:
        return RowEnd(
            result.rows_written,
            {"result": result.result, "rows_written": result.rows_written},
            _failure_text(result) if result.failed else None,
        )

    def ended(self, result: FillRun, job: Job) -> None:
        if job.status in ("failed", "cancelled"):
            log.error(
                "History fill %s after %d rows written (job %s)",
                job.status,
                result.rows_written,
                job.id,
            )
        else:
            log.info(
                "History fill: %d rows written in %d ms (job %s)",
                result.rows_written,
                result.duration_ms,
                job.id,
            )


def fill_with_job(
    engine: Engine,
    options: FillOptions,
    *,
    metadata: dict[str, Any],
    tenant: Tenant | None = None,
    progress: Progress | None = None,
    stop: StopRequest | None = None,
) -> FillRun:
    """The whole fill as one `history_fill` job row (the result in its metadata), one fill at a
    time (its own advisory lock: a second one exits 75; an orphaned job row is abandoned). Every
    chunk's commit checks the lock first (`lock.HeldLock.guard`); the lifecycle is
    `jobs.runner.run_job`'s."""
    metadata = {
        **metadata,
        "options": {
            "tenant": str(tenant.id) if tenant else None,
            "since": options.since,
            "until": options.until,
            "concurrency": options.concurrency,
        },
    }
    work = _FillWork(engine, options, tenant, progress or Progress())
    return run_job(engine, JobSpec(locks.HISTORY_FILL, "history_fill", metadata), work, stop=stop)


def _failure_text(run: FillRun) -> str:
    failures = [outcome for outcome in run.outcomes if outcome.code is not None]
    if not failures:
        return "failed"
    first = failures[0]
    return f"{len(failures)} tenant(s) failed; first: {first.tenant.slug} {first.code}: {first.message}"
