"""`kpictl freshness`: statuses, exit codes 0/1/2/3, JSON, Nagios and Prometheus output. The
service's thresholds (inclusive boundaries, parsing): tests/services/reports/test_freshness.py."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, literal, select
from sqlalchemy.dialects.postgresql import INTERVAL

from kpictl.db.schema import kpi_snapshots
from tests import factories
from tests.conftest import run_cli, run_process

UNREACHABLE = "postgresql://u:secret-pw@127.0.0.1:1/x"
FACTORY = ["mtti", "success_rate", "factory_throughput", "steering_accuracy"]


def snapshot(
    conn,
    kpi_name: str,
    age_seconds: float,
    *,
    level: str = "factory",
    scope_id: uuid.UUID | None = None,
    period_hours: int = 0,
) -> None:
    """A snapshot calculated `age_seconds` before now(); `period_hours` keeps keys distinct."""
    period_end = factories.at(24 + period_hours)
    factories.snapshot(
        conn,
        kpi_name,
        1,
        period_end - timedelta(hours=24),
        period_end,
        level=level,
        scope_id=scope_id,
        calculated_at=func.now() - literal(timedelta(seconds=age_seconds), INTERVAL),
    )


def all_factory(conn, age_seconds: float) -> None:
    for name in FACTORY:
        snapshot(conn, name, age_seconds)


def freshness(db_url, *args):
    return run_cli(["freshness", *args], db_url)


def test_all_fresh_exit_0_json_shape(engine, db_url):
    with engine.begin() as conn:
        all_factory(conn, 10)
        snapshot(conn, "mtti", 5000, period_hours=-1)  # an older row of mtti does not count
    result = freshness(db_url, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "success"
    assert [row["kpi_name"] for row in document["data"]] == FACTORY
    for row in document["data"]:
        assert set(row) == {
            "kpi_name",
            "level",
            "freshness_seconds",
            "last_calculated_at",
            "is_fresh",
            "status",
        }
        assert row["level"] == "factory" and row["status"] == "fresh" and row["is_fresh"] is True
        assert 10 <= row["freshness_seconds"] < 60
        assert datetime.fromisoformat(row["last_calculated_at"]).utcoffset() == timedelta(0)
    overall = document["overall"]
    assert overall["status"] == "fresh" and overall["exit_code"] == 0 and overall["is_fresh"]
    assert overall["counts"] == {"fresh": 4, "stale": 0, "expired": 0, "missing": 0}
    assert overall["warn_after_seconds"] == 300 and overall["error_after_seconds"] == 900


def test_one_stale_exit_1(engine, db_url):
    with engine.begin() as conn:
        for name in ("mtti", "success_rate", "factory_throughput"):
            snapshot(conn, name, 10)
        snapshot(conn, "success_rate", 400, period_hours=1)  # the newest calculated_at counts
        snapshot(conn, "steering_accuracy", 400)
    result = freshness(db_url, "--format", "json")
    assert result.exit_code == 1, result.output
    statuses = {row["kpi_name"]: row["status"] for row in json.loads(result.stdout)["data"]}
    assert statuses == {
        "mtti": "fresh",
        "success_rate": "fresh",
        "factory_throughput": "fresh",
        "steering_accuracy": "stale",
    }


def test_expired_and_missing_exit_2_nagios(engine, db_url):
    with engine.begin() as conn:
        snapshot(conn, "mtti", 1000)
        snapshot(conn, "success_rate", 10)
        snapshot(conn, "factory_throughput", 400)
    result = freshness(db_url, "--format", "nagios")
    assert result.exit_code == 2, result.output
    line = result.stdout.strip()
    assert "\n" not in line
    status, perfdata = line.split(" | ")
    assert status.startswith("KPI FRESHNESS CRITICAL - expired: mtti (10")
    assert "missing: steering_accuracy" in status and "stale: factory_throughput (40" in status
    assert status.endswith("1 of 4 factory KPIs fresh")
    labels = [item.split("=")[0] for item in perfdata.split(" ")]
    assert labels == FACTORY
    assert "steering_accuracy=U;300;900;0;" in perfdata
    assert perfdata.startswith("mtti=100") and ";300;900;0;" in perfdata.split(" ")[0]


def test_missing_only_is_exit_2(db_url):
    result = freshness(db_url, "--format", "json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert {row["status"] for row in document["data"]} == {"missing"}
    assert all(row["freshness_seconds"] is None for row in document["data"])
    assert all(row["last_calculated_at"] is None for row in document["data"])
    assert document["overall"]["status"] == "missing"


def test_nagios_ok_line(engine, db_url):
    with engine.begin() as conn:
        all_factory(conn, 0)
    result = freshness(db_url, "--format", "nagios")
    assert result.exit_code == 0
    assert result.stdout.startswith("KPI FRESHNESS OK - 4 of 4 factory KPIs fresh | mtti=")


def test_table_output(engine, db_url):
    with engine.begin() as conn:
        snapshot(conn, "mtti", 430)
    result = freshness(db_url)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "factory KPIs: stale after 5m 0s, expired after 15m 0s"
    assert lines[1].split() == ["kpi_name", "level", "status", "age", "last_calculated_at"]
    assert lines[3].split()[:3] == ["mtti", "factory", "stale"]
    assert lines[4].split() == ["success_rate", "factory", "missing", "never"]


def test_custom_thresholds(engine, db_url):
    with engine.begin() as conn:
        all_factory(conn, 700)  # stale under 10m/1h and under the defaults (300 s / 900 s)
    assert freshness(db_url, "--warn-after", "10m", "--error-after", "1h").exit_code == 1
    assert freshness(db_url, "--warn-after", "720", "--error-after", "2h").exit_code == 0
    assert freshness(db_url, "--warn-after", "1m", "--error-after", "650s").exit_code == 2
    assert freshness(db_url).exit_code == 1
    assert freshness(db_url, "--error-after", "11m").exit_code == 2


def test_kpi_filter_and_level_from_kpi(engine, db_url):
    repo = uuid.uuid4()
    with engine.begin() as conn:
        snapshot(conn, "mtti", 10)
        snapshot(conn, "run_duration", 5000, level="run", scope_id=repo)
    result = freshness(db_url, "--kpi", "mtti", "--format", "json")
    assert result.exit_code == 0
    assert [row["kpi_name"] for row in json.loads(result.stdout)["data"]] == ["mtti"]
    result = freshness(db_url, "--kpi", "run_duration", "--format", "json")
    assert result.exit_code == 2
    (row,) = json.loads(result.stdout)["data"]
    assert (row["level"], row["status"]) == ("run", "expired")


def test_product_level_newest_over_all_products(engine, db_url):
    with engine.begin() as conn:
        first = factories.repository(conn, "acme", "app")
        second = factories.repository(conn, "acme", "api")
        for name in ("product_success_rate", "product_throughput", "product_avg_duration"):
            snapshot(conn, name, 2000, level="product", scope_id=first)
        snapshot(conn, "product_success_rate", 20, level="product", scope_id=second)
    result = freshness(db_url, "--level", "product", "--format", "json")
    assert result.exit_code == 2
    statuses = {row["kpi_name"]: row["status"] for row in json.loads(result.stdout)["data"]}
    assert statuses == {
        "product_success_rate": "fresh",
        "product_throughput": "expired",
        "product_avg_duration": "expired",
    }


def test_prometheus_output_parses(engine, db_url):
    with engine.begin() as conn:
        snapshot(conn, "mtti", 100)
        snapshot(conn, "success_rate", 400)
        snapshot(conn, "factory_throughput", 1000)
    result = freshness(db_url, "--format", "prometheus")
    assert result.exit_code == 2
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    assert all(family.type == "gauge" for family in families.values())
    timestamps = {
        s.labels["kpi"]: s.value
        for s in families["kpictl_kpi_last_calculated_timestamp_seconds"].samples
    }
    assert set(timestamps) == {"mtti", "success_rate", "factory_throughput"}  # not the missing one
    ages = {s.labels["kpi"]: s.value for s in families["kpictl_kpi_age_seconds"].samples}
    assert 100 <= ages["mtti"] < 160 and 1000 <= ages["factory_throughput"] < 1060
    assert all(s.labels["level"] == "factory" for s in families["kpictl_kpi_age_seconds"].samples)
    current = {
        s.labels["kpi"]: s.labels["status"]
        for s in families["kpictl_kpi_freshness_status"].samples
        if s.value == 1
    }
    assert current == {
        "mtti": "fresh",
        "success_rate": "stale",
        "factory_throughput": "expired",
        "steering_accuracy": "missing",
    }
    assert len(families["kpictl_kpi_freshness_status"].samples) == 16
    assert families["kpictl_freshness_check_success"].samples[0].value == 1
    assert families["kpictl_freshness_warn_after_seconds"].samples[0].value == 300
    assert families["kpictl_freshness_error_after_seconds"].samples[0].value == 900


def test_unreachable_exit_3_in_every_format():
    result = run_cli(["freshness", "--format", "nagios"], UNREACHABLE)
    assert result.exit_code == 3
    assert result.stdout.startswith("KPI FRESHNESS UNKNOWN - database unreachable")
    assert "secret-pw" not in result.output and "Traceback" not in result.output
    result = run_cli(["freshness", "--format", "json"], UNREACHABLE)
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["status"] == "error" and document["error"]["exit_code"] == 3
    assert document["error"]["message"].startswith("database unreachable")
    result = run_cli(["freshness", "--format", "prometheus"], UNREACHABLE)
    assert result.exit_code == 3
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    assert families["kpictl_freshness_check_success"].samples[0].value == 0
    result = run_cli(["freshness"], UNREACHABLE)
    assert result.exit_code == 3 and result.stdout == ""
    assert "could not check freshness: database unreachable" in result.stderr


def test_query_failure_exit_3(db_url, engine):
    # A migrated database whose snapshot table the query cannot read. (An unmigrated one is
    # stopped by the schema gate with exit 1, like every command: tests/cli/test_schema_gate.py.)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE kpi_snapshots RENAME COLUMN calculated_at TO renamed_at")
    result = run_cli(["freshness", "--format", "nagios"], db_url)
    assert result.exit_code == 3
    assert result.stdout.startswith("KPI FRESHNESS UNKNOWN - database error")
    assert "calculated_at" in result.stdout


def test_exit_3_from_a_real_process():
    completed = run_process(["freshness", "--format", "nagios"], UNREACHABLE)
    assert completed.returncode == 3
    assert completed.stdout.startswith("KPI FRESHNESS UNKNOWN - ")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--kpi", "mtt"], "'mtt'"),
        (["--warn-after", "20m"], "--warn-after (1200s) is greater than --error-after (900s)"),
        (["--warn-after", "5 minutes"], "'5 minutes'"),
        (["--error-after", "-1"], "'-1'"),
        (["--kpi", "run_duration", "--level", "factory"], "'run_duration'"),
        (["--kpi", "mtti", "--kpi", "run_duration"], "different levels"),
        (["--level", "tenant"], "'tenant'"),
        (["--format", "xml"], "'xml'"),
    ],
)
def test_bad_inputs_exit_2(db_url, args, named):
    result = freshness(db_url, *args)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_rerun_is_read_only(engine, db_url):
    with engine.begin() as conn:
        all_factory(conn, 10)
    first = json.loads(freshness(db_url, "--format", "json").stdout)
    second = json.loads(freshness(db_url, "--format", "json").stdout)
    assert [r["last_calculated_at"] for r in first["data"]] == [
        r["last_calculated_at"] for r in second["data"]
    ]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(kpi_snapshots)).scalar() == 4
