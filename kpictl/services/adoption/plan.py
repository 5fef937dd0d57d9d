"""The adoption plan: every step's SQL, built from the live catalog inside the adoption's
transaction (after its lock), the same list `migrate --adopt --sql` prints and `migrate --adopt`
runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

from kpictl.db import schema
from kpictl.errors import CommandFailed, UsageError
from kpictl.services.adoption.finish import own_tables_step, record_step
from kpictl.services.adoption.functions import functions_steps
from kpictl.services.adoption.steps import (
    KPI_TABLES,
    LOCK,
    AdoptionPlan,
    Statement,
    Step,
    relation_exists,
    scalar,
    table_columns,
)
from kpictl.services.adoption.tables import jobs_step, snapshot_step
from kpictl.services.adoption.views import (
    dependent_views,
    materialized_view_step,
    materialized_views,
    recreate_views_step,
)


def check_timezone(connection: Connection, zone: str) -> str:
    found = connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = :zone)"), {"zone": zone}
    ).scalar()
    if not found and zone.upper() != "UTC":
        raise UsageError(f"unknown time zone for KPICTL_SOURCE_TIMEZONE: {zone!r}")
    return zone


def build_plan(
    connection: Connection, source_timezone: str, metadata: dict[str, Any]
) -> AdoptionPlan:
    """Read the live catalog (inside the adoption's transaction, after its lock) and return the
    statements that bring it to kpictl's revision 0002, each step with a plain summary."""
    zone = check_timezone(connection, source_timezone)
    for table in KPI_TABLES:
        if not relation_exists(connection, table):
            raise CommandFailed(
                f"cannot adopt: {table} is missing (AFU-9 databases have both {' and '.join(KPI_TABLES)})"
            )
    columns = {table: table_columns(connection, table) for table in KPI_TABLES}
    for table in KPI_TABLES:
        expected = [c.name for c in schema.metadata.tables[table].columns if c.name != "job_id"]
        missing = [name for name in expected if name not in columns[table]]
        if missing:
            raise CommandFailed(
                f"cannot adopt: {table} has no column {', '.join(missing)}; this is not the AFU-9 "
                "shape kpictl knows. Nothing was changed."
            )
    views = dependent_views(connection)
    plan = AdoptionPlan(
        steps=[],
        snapshots=scalar(connection, "SELECT count(*) FROM kpi_snapshots"),
        duplicates=0,
        duplicates_by_level={},
        jobs_abandoned=0,
        views=[view["name"] for view in views],
        source_timezone=zone,
        job_id=uuid.uuid4(),
    )
    plan.steps.append(
        Step(
            "lock",
            "lock kpi_snapshots and kpi_aggregation_jobs (the platform's run updates wait for "
            "the commit)",
            [Statement(LOCK)],
        )
    )
    drop = Step("drop-views", "")
    for view in reversed(views):
        drop.add(f"DROP VIEW {view['name']}")
    if views:
        drop.summary = (
            f"drop the {len(views)} dependent views (recreated below): {', '.join(plan.views)}"
        )
        plan.steps.append(drop)
    old_views = materialized_views(connection)
    replace = Step(
        "drop-materialized-views",
        "drop AFU-9's materialized views (replaced below)" if old_views else "",
    )
    for view in old_views:
        replace.add(f"DROP MATERIALIZED VIEW {view['name']}")
    if old_views:
        plan.steps.append(replace)
    plan.steps.append(snapshot_step(connection, plan, columns["kpi_snapshots"], zone))
    plan.steps.append(jobs_step(connection, plan, columns["kpi_aggregation_jobs"], zone))
    plan.steps.append(materialized_view_step(old_views))
    if views:
        plan.steps.append(recreate_views_step(views))
    functions, check = functions_steps(connection, zone)
    if functions.statements:
        plan.steps.append(functions)
    tables = own_tables_step(connection)
    if tables.statements:
        plan.steps.append(tables)
    plan.steps.append(record_step(plan, metadata))
    plan.steps.append(check)
    return plan
