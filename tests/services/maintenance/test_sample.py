"""The sample factory: sizes, coverage of every odd case, determinism, idempotency, reset."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, text

from kpictl import sample
from kpictl.db import schema
from kpictl.db.engine import make_engine
from tests import factories
from tests.conftest import test_settings

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday: latest report week is 2026-02-23
SMALL = {
    "seed": 7,
    "repositories": 4,
    "days": 3,
    "runs_per_day": 10,
    "tenants": 4,
    "weeks": 5,
    "pages": 3,
    "now": NOW,
}
SOURCE_TABLES = (
    "repositories",
    "workflow_executions",
    "agent_runs",
    "mcp_tool_calls",
    "verdict_outcomes",
    "tenants",
    "avi_reports",
    "vdp_vli_audit",
)

# Every column but the bigint identity ids, in a fixed order: equal fingerprints = equal data.
FINGERPRINT = """
SELECT 'repositories', md5(string_agg(t::text, '|' ORDER BY t::text)) FROM repositories t
UNION ALL SELECT 'workflow_executions', md5(string_agg(t::text, '|' ORDER BY t::text))
    FROM workflow_executions t
UNION ALL SELECT 'agent_runs', md5(string_agg(t::text, '|' ORDER BY t::text)) FROM agent_runs t
UNION ALL SELECT 'mcp_tool_calls', md5(string_agg(t::text, '|' ORDER BY t::text))
    FROM mcp_tool_calls t
UNION ALL SELECT 'verdict_outcomes', md5(string_agg(t::text, '|' ORDER BY t::text))
    FROM verdict_outcomes t
UNION ALL SELECT 'tenants', md5(string_agg(t::text, '|' ORDER BY t::text)) FROM tenants t
UNION ALL SELECT 'avi_reports', md5(string_agg(
    (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, clarity_json,
     created_at)::text, '|' ORDER BY (tenant_id, as_of, created_at)::text)) FROM avi_reports
UNION ALL SELECT 'vdp_vli_audit', md5(string_agg(
    (tenant_id, vdp_id, as_of, integrity_pct, created_at)::text, '|'
    ORDER BY (tenant_id, vdp_id, as_of)::text)) FROM vdp_vli_audit
"""


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def fingerprint(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text(FINGERPRINT)).all())


def table_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in SOURCE_TABLES
        }


def test_counts_match_the_parameters(engine):
    steps = []
    with engine.begin() as conn:
        counts = sample.generate(conn, **SMALL, on_step=lambda *step: steps.append(step))
    assert steps == list(counts.items())
    assert [table for table, _ in steps] == list(sample.STEPS)
    assert counts["repositories"] == 4
    assert counts["workflow_executions"] == 30  # 3 days x 10 runs
    assert counts["tenants"] == 4
    # tenant 3 (the last) has no reports: 3 tenants x 5 weeks, plus 1 to 15 duplicates
    assert 16 <= counts["avi_reports"] <= 30
    # tenant 2 (second to last) has no audits: 3 tenants x 5 weeks x 3 pages
    assert counts["vdp_vli_audit"] == 45
    assert counts == table_counts(engine)
    # 1-2 agent runs and 0-2 tool calls per started run (1-3 for the first eight), none for
    # pending runs
    per_run = """
        SELECT e.status, count(DISTINCT a.id), count(DISTINCT c.id)
        FROM workflow_executions e
        LEFT JOIN agent_runs a ON a.execution_id = e.id
        LEFT JOIN mcp_tool_calls c ON c.execution_id = e.id
        GROUP BY e.id"""
    with engine.connect() as conn:
        rows = conn.execute(text(per_run)).all()
    assert all(agents == 0 and calls == 0 for status, agents, calls in rows if status == "pending")
    started = [(agents, calls) for status, agents, calls in rows if status != "pending"]
    assert all(1 <= agents <= 2 and 0 <= calls <= 3 for agents, calls in started)


def test_every_case_is_present(engine):
    with engine.begin() as conn:
        sample.generate(conn, **SMALL)
    statuses = scalar(
        engine, "SELECT array_agg(DISTINCT status ORDER BY status) FROM workflow_executions"
    )
    assert statuses == sorted(sample.STATUSES)
    outcomes = scalar(
        engine, "SELECT array_agg(DISTINCT outcome ORDER BY outcome) FROM verdict_outcomes"
    )
    assert outcomes == sorted(sample.OUTCOMES)
    checks = {
        "disabled repository": "SELECT count(*) FROM repositories WHERE NOT kpi_enabled",
        "run without repository": "SELECT count(*) FROM workflow_executions WHERE repository_id IS NULL",
        "invalid run": """SELECT count(*) FROM workflow_executions
                          WHERE status = 'completed' AND completed_at < started_at""",
        "NULL total_tokens": "SELECT count(*) FROM agent_runs WHERE total_tokens IS NULL",
        "tool error": "SELECT count(*) FROM mcp_tool_calls WHERE error IS NOT NULL",
        "undecided verdict": "SELECT count(*) FROM verdict_outcomes WHERE decided_at IS NULL",
        "duplicate report week": """SELECT count(*) FROM (SELECT 1 FROM avi_reports
                                    GROUP BY tenant_id, as_of HAVING count(*) > 1) AS d""",
        "numeric hrp": "SELECT count(*) FROM avi_reports WHERE jsonb_typeof(clarity_json->'hrp') = 'number'",
        "no clarity_json": "SELECT count(*) FROM avi_reports WHERE clarity_json IS NULL",
    }
    for name, sql in checks.items():
        assert scalar(engine, sql) >= 1, name
    assert scalar(engine, "SELECT count(*) FROM repositories WHERE NOT kpi_enabled") == 1
    # durations are minutes, not days; finished runs end before `now`
    assert scalar(
        engine,
        """SELECT bool_and(completed_at - started_at BETWEEN interval '1 minute'
                                                         AND interval '61 minutes')
           FROM workflow_executions WHERE completed_at >= started_at""",
    )
    assert scalar(engine, "SELECT max(completed_at) FROM workflow_executions") <= NOW
    # report weeks are the 5 Mondays before NOW's week
    weeks = scalar(engine, "SELECT array_agg(DISTINCT as_of ORDER BY as_of) FROM avi_reports")
    assert weeks == [
        date(2026, 1, 26),
        date(2026, 2, 2),
        date(2026, 2, 9),
        date(2026, 2, 16),
        date(2026, 2, 23),
    ]
    assert scalar(engine, "SELECT bool_and(extract(isodow FROM as_of) = 1) FROM avi_reports")
    slugs = scalar(engine, "SELECT array_agg(slug ORDER BY slug) FROM tenants")
    assert slugs == ["acme", "bayside-auto", "crestline-motors", "dune-cars"]


def test_rerun_adds_nothing(engine):
    with engine.begin() as conn:
        sample.generate(conn, **SMALL)
    before = table_counts(engine)
    with engine.begin() as conn:
        again = sample.generate(conn, **SMALL)
    assert again == dict.fromkeys(SOURCE_TABLES, 0)
    assert table_counts(engine) == before


def test_same_seed_same_rows_across_databases(engine, pg_server, template_db):
    with engine.begin() as conn:
        sample.generate(conn, **SMALL)
    first = fingerprint(engine)
    name = f"t_{uuid.uuid4().hex[:12]}"
    other_url = pg_server.create_database(name, template=template_db)
    other = make_engine(other_url, test_settings(other_url))
    try:
        with other.begin() as conn:
            sample.generate(conn, **SMALL)
        assert fingerprint(other) == first
        with other.begin() as conn:
            sample.reset(conn)
            sample.generate(conn, **{**SMALL, "seed": 8})
        changed = fingerprint(other)
        assert all(changed[table] != first[table] for table in SOURCE_TABLES if table != "tenants")
    finally:
        other.dispose()
        pg_server.drop_database(name)


def test_reset_removes_only_sample_rows(engine):
    with engine.begin() as conn:
        own_repo = factories.repository(conn, "platform", "real")
        own_run = factories.execution(conn, own_repo, "completed", factories.at(1), factories.at(2))
        factories.agent_run(conn, own_run, total_tokens=10)
        own_tenant = factories.tenant(conn, "real-tenant")
        factories.avi_report(conn, own_tenant, date(2026, 1, 5), aiv_pct=1)
        sample.generate(conn, **SMALL)
        acme = conn.execute(text("SELECT id FROM tenants WHERE slug = 'acme'")).scalar_one()
        conn.execute(
            insert(schema.kpi_history).values(tenant_id=acme, as_of=date(2026, 2, 23), aiv_pct=1)
        )
    with engine.begin() as conn:
        removed = sample.reset(conn)
    assert removed["workflow_executions"] == 30 and removed["kpi_history"] == 1
    assert table_counts(engine) == {
        "repositories": 1,
        "workflow_executions": 1,
        "agent_runs": 1,
        "mcp_tool_calls": 0,
        "verdict_outcomes": 0,
        "tenants": 1,
        "avi_reports": 1,
        "vdp_vli_audit": 0,
    }
    with engine.begin() as conn:
        assert sample.reset(conn) == dict.fromkeys(
            (*SOURCE_TABLES, "kpi_history", "kpi_snapshots"), 0
        )


def test_reset_removes_snapshots_of_sample_runs_only(engine):
    from kpictl.services.jobs.stop import StopRequest
    from kpictl.services.pipeline import run as pipeline
    from kpictl.services.pipeline import steps
    from kpictl.services.pipeline.periods import Period

    with engine.begin() as conn:
        own_repo = factories.repository(conn, "platform", "real")
        factories.execution(conn, own_repo, "completed", factories.at(1), factories.at(2))
        sample.generate(conn, **{**SMALL, "now": factories.at(24)})
    period = Period(factories.at(-24 * 30), factories.at(24))
    pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(), stop=StopRequest()
    )
    before = scalar(engine, "SELECT count(*) FROM kpi_snapshots")
    with engine.begin() as conn:
        removed = sample.reset(conn)
        left = conn.execute(
            text("SELECT level, count(*) FROM kpi_snapshots GROUP BY level ORDER BY level")
        ).all()
    # what is left: the platform's own run (1 run row) and product (3 rows), the factory rows;
    # every other snapshot was the sample's, and reset says it removed exactly those
    assert [tuple(row) for row in left] == [("factory", 4), ("product", 3), ("run", 1)]
    assert removed["kpi_snapshots"] == before - 8


def test_a_taken_slug_skips_that_tenant_without_orphans(engine):
    with engine.begin() as conn:
        factories.tenant(conn, "acme")  # not the sample's
        counts = sample.generate(conn, **SMALL)
    assert counts["tenants"] == 3
    orphans = """SELECT count(*) FROM {table} t
                 WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE tenants.id = t.tenant_id)"""
    assert scalar(engine, orphans.format(table="avi_reports")) == 0
    assert scalar(engine, orphans.format(table="vdp_vli_audit")) == 0
    # tenants 1 and 3 keep their 5 weeks x 3 pages of audits (2 has none, 0 was skipped)
    assert counts["vdp_vli_audit"] == 30


@pytest.mark.parametrize("bad", [{"days": 0}, {"tenants": -1}, {"runs_per_day": 1.5}])
def test_bad_sizes_are_refused(engine, bad):
    with engine.begin() as conn, pytest.raises(ValueError, match="must be a whole number >= 1"):
        sample.generate(conn, **{**SMALL, **bad})


@pytest.mark.slow
def test_large_generation_finishes(engine):
    with engine.begin() as conn:
        counts = sample.generate(conn, seed=1, days=10, runs_per_day=10_000, now=NOW)
    assert counts["workflow_executions"] == 100_000
    assert scalar(engine, "SELECT count(DISTINCT status) FROM workflow_executions") == 6
