"""The AFU-9 stand-in (`tests/afu9.py`) has the platform's exact shapes.

The expected signatures below are the facts of docs/spec/adoption.md's addendum "Exact shapes
of the platform's objects" (measured on a database built from the platform's own migrations),
kept here as literals: an edit of the stand-in that drifts from the platform fails this test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text

from kpictl.db.engine import make_engine
from tests import afu9
from tests.conftest import libpq, test_settings

FUNCTIONS = {
    # name: (arguments, result, language, volatility)
    "get_kpi_freshness": (
        "p_kpi_name character varying DEFAULT NULL::character varying",
        "TABLE(kpi_name character varying, freshness_seconds numeric, "
        "last_calculated_at timestamp without time zone)",
        "plpgsql",
        "v",
    ),
    "calculate_steering_accuracy": (
        "p_period_hours integer DEFAULT 24",
        "TABLE(steering_accuracy_pct numeric, total_decisions bigint, accepted_decisions bigint, "
        "overridden_decisions bigint, escalated_decisions bigint)",
        "plpgsql",
        "v",
    ),
    "refresh_kpi_materialized_views": ("", "void", "plpgsql", "v"),
    "create_run_kpi_snapshot": ("", "trigger", "plpgsql", "v"),
}

VIEW_COLUMNS = {
    "mv_factory_kpis_24h": [
        ("mtti_ms", "numeric"),
        ("success_rate_pct", "numeric"),
        ("total_executions", "bigint"),
        ("completed_executions", "bigint"),
        ("failed_executions", "bigint"),
        ("running_executions", "bigint"),
        ("avg_duration_ms", "numeric"),
        ("period_start", "timestamp without time zone"),
        ("period_end", "timestamp without time zone"),
        ("calculated_at", "timestamp with time zone"),
    ],
    "mv_product_kpis_7d": [
        ("repository_id", "uuid"),
        ("product_name", "text"),
        ("success_rate_pct", "numeric"),
        ("daily_throughput", "numeric"),
        ("total_executions", "bigint"),
        ("completed_executions", "bigint"),
        ("failed_executions", "bigint"),
        ("avg_duration_ms", "numeric"),
        ("period_start", "timestamp without time zone"),
        ("period_end", "timestamp without time zone"),
        ("calculated_at", "timestamp with time zone"),
    ],
    "v_product_kpi_performance": [
        ("product_id", "uuid"),
        ("product_key", "character varying(255)"),
        ("display_name", "character varying(255)"),
        ("kpi_name", "character varying(100)"),
        ("actual_value", "numeric(15,4)"),
        ("unit", "character varying(50)"),
        ("target_value", "numeric"),
        ("meets_target", "boolean"),
        ("calculated_at", "timestamp without time zone"),
        ("period_start", "timestamp without time zone"),
        ("period_end", "timestamp without time zone"),
    ],
}

UNIQUE_INDEXES = {"mv_factory_kpis_24h": "calculated_at", "mv_product_kpis_7d": "repository_id"}

TRIGGER = (
    "CREATE TRIGGER trigger_create_run_kpi_snapshot AFTER UPDATE ON public.workflow_executions "
    "FOR EACH ROW EXECUTE FUNCTION create_run_kpi_snapshot()"
)


@pytest.fixture
def standin(pg_server):
    name = f"s_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    engine = make_engine(url, test_settings(url))
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    with engine.begin() as conn:
        afu9.build_afu9(conn, now)
    yield engine, url
    engine.dispose()
    pg_server.drop_database(name)


def test_function_signatures_are_the_platforms(standin):
    engine, _ = standin
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), "
                "l.lanname, p.provolatile FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                "WHERE p.proname = ANY(:names)"
            ),
            {"names": list(FUNCTIONS)},
        ).all()
    assert {row[0]: tuple(row[1:]) for row in rows} == FUNCTIONS


def test_view_columns_and_unique_indexes_are_the_platforms(standin):
    engine, _ = standin
    with engine.connect() as conn:
        for view, columns in VIEW_COLUMNS.items():
            actual = conn.execute(
                text(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "WHERE a.attrelid = CAST(:view AS regclass) AND a.attnum > 0 ORDER BY a.attnum"
                ),
                {"view": view},
            ).all()
            assert [tuple(row) for row in actual] == columns, view
        for view, column in UNIQUE_INDEXES.items():
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = :view"), {"view": view}
            ).scalar_one()
            assert definition.startswith("CREATE UNIQUE INDEX") and f"({column})" in definition
        assert (
            conn.execute(
                text(
                    "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                    "WHERE tgname = 'trigger_create_run_kpi_snapshot'"
                )
            ).scalar_one()
            == TRIGGER
        )


def test_the_platforms_product_view_is_never_a_stub(standin):
    """The published migration's product view: a repository without runs still has a row."""
    engine, _ = standin
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT product_name, total_executions FROM mv_product_kpis_7d ORDER BY 1")
        ).all()
    # acme/app: A1, A2, RUNNING, CANCELLED, OLD7; acme/legacy: B1; beta/web: OLD8
    assert [tuple(row) for row in rows] == [("acme/app", 5), ("acme/legacy", 1), ("beta/web", 1)]


def test_the_platforms_functions_and_trigger_behave_as_shipped(standin):
    engine, url = standin
    with engine.connect() as conn:
        freshness = conn.execute(
            text("SELECT kpi_name FROM get_kpi_freshness(NULL) ORDER BY 1")
        ).scalars()
        # factory rows only
        assert list(freshness) == [
            "factory_throughput",
            "mtti",
            "steering_accuracy",
            "success_rate",
        ]
        accuracy = conn.execute(text("SELECT * FROM calculate_steering_accuracy(24)")).one()
        # unknown counts in the denominator: 2 accepted of 4 decided in the last 24 h
        assert tuple(accuracy) == (50, 4, 2, 1, 0)
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(
            "UPDATE workflow_executions SET status = 'completed', completed_at = started_at "
            "+ interval '2 minutes' WHERE id = %s",
            (afu9.RUN_RUNNING,),
        )
        rows = conn.execute(
            "SELECT kpi_name, value, unit FROM kpi_snapshots WHERE scope_id = %s ORDER BY 1",
            (afu9.RUN_RUNNING,),
        ).fetchall()
        assert [(name, int(value), unit) for name, value, unit in rows] == [
            ("run_duration", 120000, "milliseconds"),
            ("run_success", 1, "boolean"),
        ]
        conn.rollback()
        # no NULL guard: completing a run without completed_at fails the platform's UPDATE
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                "UPDATE workflow_executions SET status = 'failed' WHERE id = %s",
                (afu9.RUN_RUNNING,),
            )
