"""The last steps of an adoption: kpictl's own tables (`tenants`, `kpi_history` with its
row-level security, as revision 0001 creates them) and the record (the marker table, the
`adopt` job row, Alembic's version table stamped at the adopted revision).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from kpictl.db import schema
from kpictl.services.adoption.steps import (
    ADOPTED_REVISION,
    DIALECT,
    MARKER_TABLE,
    AdoptionPlan,
    Step,
    relation_exists,
)
from kpictl.services.adoption.tables import index_name
from kpictl.services.jobs.rows import finished_job_statement


def own_tables_step(connection: Connection) -> Step:
    step = Step("tables", "")
    created = []
    for name in ("tenants", "kpi_history"):
        if relation_exists(connection, name):
            continue
        created.append(name)
        table = schema.metadata.tables[name]
        step.add(str(CreateTable(table).compile(dialect=DIALECT)))
        for index in sorted(table.indexes, key=index_name):
            step.add(str(CreateIndex(index).compile(dialect=DIALECT)))
    if "kpi_history" in created:
        predicate = schema.KPI_HISTORY_POLICY_PREDICATE
        step.add("ALTER TABLE kpi_history ENABLE ROW LEVEL SECURITY")
        step.add("ALTER TABLE kpi_history FORCE ROW LEVEL SECURITY")
        step.add(
            f"CREATE POLICY {schema.KPI_HISTORY_POLICY} ON kpi_history "
            f"USING ({predicate}) WITH CHECK ({predicate})"
        )
    if created:
        step.summary = f"create kpictl's {' and '.join(created)} (row-level security as in 0001)"
    return step


def record_step(plan: AdoptionPlan, metadata: dict[str, Any]) -> Step:
    from kpictl.db.migrations import VERSION_TABLE

    details = {
        **metadata,
        "adopted_from": "AFU-9",
        "revision": ADOPTED_REVISION,
        "source_timezone": plan.source_timezone,
        "snapshots_before": plan.snapshots,
        "snapshots_kept": plan.snapshots_kept,
        "duplicates_removed": plan.duplicates,
        "duplicates_by_level": plan.duplicates_by_level,
        "jobs_abandoned": plan.jobs_abandoned,
        "views_recreated": plan.views,
    }
    step = Step(
        "record",
        f"record the adoption ({MARKER_TABLE}, a job row of type 'adopt') and stamp revision "
        f"{ADOPTED_REVISION}",
    )
    step.add(
        f"CREATE TABLE {MARKER_TABLE} (adopted_at timestamptz NOT NULL DEFAULT now(), "
        "adopted_from text NOT NULL, revision varchar(32) NOT NULL, "
        "duplicates_removed bigint NOT NULL, jobs_abandoned bigint NOT NULL, job_id uuid)"
    )
    step.add(
        f"COMMENT ON TABLE {MARKER_TABLE} IS 'kpictl adopted this AFU-9 database: a one-way "
        f"data migration; kpictl refuses to downgrade below revision {ADOPTED_REVISION}'"
    )
    # The adoption's job row commits (or not) with the adoption itself: see
    # `rows.finished_job_statement` for why it cannot go through the job runner.
    step.add(*finished_job_statement(plan.job_id, "adopt", details))
    step.add(
        f"INSERT INTO {MARKER_TABLE} (adopted_from, revision, duplicates_removed, jobs_abandoned, "
        "job_id) VALUES ('AFU-9', :revision, :duplicates, :jobs, CAST(:job_id AS uuid))",
        {
            "revision": ADOPTED_REVISION,
            "duplicates": plan.duplicates,
            "jobs": plan.jobs_abandoned,
            "job_id": str(plan.job_id),
        },
    )
    # Alembic's own version table, as its MigrationContext creates it.
    step.add(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    step.add(
        f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)",
        {"revision": ADOPTED_REVISION},
    )
    return step
