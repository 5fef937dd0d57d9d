"""docs/deploy/grafana/: the dashboard's every query (panels and variables) executed on a migrated
database with the demo's data, Grafana's macros and variables replaced by literal values; each
must return rows with the columns its panel draws. The provisioning files must name the data
source the panels use."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from tests.conftest import run_cli

GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "kpictl-dashboard.json").read_text())
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]

# What each panel draws: a time series needs "time" first, then numbers; a table its columns.
COLUMNS = {
    "mtti": ["time", "mtti"],
    "success_rate": ["time", "success_rate"],
    "factory_throughput": ["time", "factory_throughput"],
    "steering_accuracy": ["time", "steering_accuracy"],
    "Last 24 hours": [
        "period_end",
        "terminal_runs",
        "success_rate",
        "mtti_ms",
        "runs_per_day",
        "steering_accuracy",
        "calculated_at",
    ],
    "product_success_rate": ["time", "product_success_rate"],
    "product_throughput": ["time", "product_throughput"],
    "product_avg_duration": ["time", "product_avg_duration"],
    "Products, last 7 days": [
        "product",
        "terminal_runs",
        "success_rate",
        "runs_per_day",
        "avg_duration_ms",
        "calculated_at",
    ],
    "Freshness": ["kpi_name", "last_calculated_at", "age_seconds"],
    "Failed jobs": ["time", "job_type", "job_id", "error"],
    "Job durations": ["time", "metric", "duration_ms"],
}


def grafana_sql(sql: str, variables: dict[str, str], start: datetime, end: datetime) -> str:
    """What Grafana sends for `sql`: its time macros with literal bounds, then `$name`."""
    bounds = f"BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 {bounds}", sql)
    sql = sql.replace("$__timeFrom()", f"'{start.isoformat()}'")
    sql = sql.replace("$__timeTo()", f"'{end.isoformat()}'")
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, sql
    return sql


@pytest.fixture
def demo(db_url, engine):
    assert run_cli(["demo"], db_url).exit_code == 0
    with engine.begin() as conn:  # a failed job, as the panel lists them
        conn.execute(
            text(
                "INSERT INTO kpi_aggregation_jobs (job_type, status, started_at, error) "
                "VALUES ('aggregate', 'failed', now() - interval '1 hour', 'boom')"
            )
        )
    return engine


def variables(engine, start, end) -> dict[str, str]:
    """Each variable's first value, from its own query (the dashboard's default choice)."""
    chosen = {}
    with engine.connect() as conn:
        for variable in DASHBOARD["templating"]["list"]:
            rows = conn.execute(text(grafana_sql(variable["query"], {}, start, end))).mappings()
            first = rows.first()
            assert first is not None, variable["name"]
            assert set(first) == {"__text", "__value"}
            chosen[variable["name"]] = str(first["__value"])
    return chosen


def test_every_panel_query_returns_the_columns_it_draws(demo):
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    values = variables(demo, start, end)
    assert values["window"] == "24"  # the demo's daily buckets outnumber its weekly cycle
    assert sorted(COLUMNS) == sorted(panel["title"] for panel in PANELS)
    for panel in PANELS:
        (target,) = panel["targets"]
        with demo.connect() as conn:
            result = conn.execute(text(grafana_sql(target["rawSql"], values, start, end)))
            columns, rows = list(result.keys()), result.fetchall()
        assert columns == COLUMNS[panel["title"]], panel["title"]
        assert rows, f"{panel['title']}: no rows on the demo's data"
        if target["format"] == "time_series":
            assert panel["type"] == "timeseries" and columns[0] == "time"
            assert all(isinstance(row[0], datetime) for row in rows)
            assert any(row[-1] is not None for row in rows), panel["title"]


def test_panels_use_the_provisioned_data_source():
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/kpictl.yaml").read_text())
    (source,) = provisioned["datasources"]
    expected = {"type": source["type"], "uid": source["uid"]}
    for panel in PANELS:
        assert panel["datasource"] == expected
        assert all(target["datasource"] == expected for target in panel["targets"])
        assert all(
            target["rawQuery"] and target["editorMode"] == "code" for target in panel["targets"]
        )
    assert all(var["datasource"] == expected for var in DASHBOARD["templating"]["list"])
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    dashboards = yaml.safe_load((GRAFANA / "provisioning/dashboards/kpictl.yaml").read_text())
    assert dashboards["providers"][0]["options"]["path"].endswith("/kpictl")
