"""Running an adoption: one transaction, committed at the end (or nothing), then the
`kpictl_*` source indexes CONCURRENTLY; and the read-only SQL for a DBA.

The caller (`services/schema/migrate.py::adopt`) holds the migrate lock (`jobs/lock.py`, the
same helpers as every job) and passes a connection whose commits are fenced by it. The
adoption's job row (`adopt`) and its marking of the old scheduler's jobs `abandoned` are
statements of `jobs/rows.py`, run inside the adoption's transaction: the row cannot be written
before (the table is the platform's until the adoption commits) and must not outlive a failed
adoption, so the job runner's lifecycle (a `running` row first, in a transaction of its own)
does not apply.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, text

from kpictl import _testing
from kpictl.db.migrations import revision_module
from kpictl.errors import CommandFailed
from kpictl.services.adoption.detect import is_adopted, needs_adoption
from kpictl.services.adoption.plan import build_plan
from kpictl.services.adoption.steps import LOCK, AdoptionResult, Statement

log = logging.getLogger(__name__)


def _execute(connection: Connection, statement: Statement) -> None:
    if statement.params:
        connection.execute(text(statement.sql), statement.params)
    else:
        # Driver-level and without parameters: view and function bodies may hold ':' and '%'.
        connection.exec_driver_sql(statement.sql, execution_options={"no_parameters": True})


def _run_check(connection: Connection, statement: Statement) -> None:
    savepoint = connection.begin_nested()
    try:
        _execute(connection, statement)
    except Exception as exc:
        savepoint.rollback()
        raise CommandFailed(
            f"adoption would break the platform: `{statement.sql}` fails afterwards "
            f"({str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}). Nothing was changed."
        ) from exc
    savepoint.rollback()


def adopt(
    connection: Connection,
    *,
    source_timezone: str = "UTC",
    metadata: dict[str, Any] | None = None,
) -> AdoptionResult:
    """Adopt the AFU-9 tables in one transaction on `connection` (which holds no transaction),
    committed at the end; or do nothing when there is nothing to adopt."""
    if not needs_adoption(connection):
        reason = (
            "already adopted"
            if is_adopted(connection)
            else "no AFU-9 KPI tables without a kpictl revision"
        )
        connection.commit()
        return AdoptionResult(False, reason)
    connection.commit()
    with connection.begin():
        connection.exec_driver_sql(LOCK)
        if not needs_adoption(connection):  # another process adopted it while we waited
            return AdoptionResult(False, "already adopted")
        plan = build_plan(connection, source_timezone, metadata or {})
        log.info("Adopting the AFU-9 database: %d steps", len(plan.steps))
        for step in plan.steps:
            for statement in step.statements:
                if step.name == "check":
                    _run_check(connection, statement)
                else:
                    _execute(connection, statement)
            log.info("adopt: %s", step.summary or step.name)
            _testing.fail_after(step.name)
    log.info(
        "Adoption committed: %d duplicate snapshots removed, %d jobs abandoned",
        plan.duplicates,
        plan.jobs_abandoned,
    )
    return AdoptionResult(
        True,
        "",
        duplicates_removed=plan.duplicates,
        duplicates_by_level=plan.duplicates_by_level,
        snapshots_kept=plan.snapshots_kept,
        jobs_abandoned=plan.jobs_abandoned,
        views_recreated=plan.views,
        job_id=str(plan.job_id),
        summary=plan.describe(),
    )


def adoption_sql(
    connection: Connection, *, source_timezone: str = "UTC", metadata: dict[str, Any] | None = None
) -> str:
    """The adoption's SQL for a DBA, from a read-only look at the live database."""
    with connection.begin() as transaction:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        if not needs_adoption(connection):
            reason = "already adopted" if is_adopted(connection) else "no AFU-9 KPI tables here"
            transaction.rollback()
            return (
                f"-- kpictl: nothing to adopt ({reason}); `kpictl migrate --sql` prints the rest\n"
            )
        plan = build_plan(connection, source_timezone, metadata or {})
        transaction.rollback()
    after = ["\n-- after the commit, outside any transaction:"]
    after += [f"{statement};" for statement in source_index_statements()]
    return plan.sql() + "\n".join(after) + "\n"


def source_index_statements() -> list[str]:
    pipeline = revision_module("0002")
    return [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})"
        for name, table, column in pipeline.SOURCE_INDEXES
    ]
