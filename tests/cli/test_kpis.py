"""`kpictl kpis`: latest value per KPI and scope, table/JSON/CSV, levels and product filter."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from kpictl.db.schema import kpi_snapshots
from kpictl.services.reports import latest as service
from tests import factories
from tests.conftest import run_cli

DAY1, DAY2, DAY3 = factories.at(0), factories.at(24), factories.at(48)
JSON_KEYS = {
    "kpi_name",
    "level",
    "scope_id",
    "product",
    "value",
    "unit",
    "kpi_version",
    "period_start",
    "period_end",
    "calculated_at",
}


def calc(hour: float) -> datetime:
    return datetime(2026, 1, 10, tzinfo=UTC) + (factories.at(hour) - factories.at(0))


@pytest.fixture
def factory_data(engine):
    with engine.begin() as conn:
        # mtti: the newest period wins even though the older period was calculated later
        factories.snapshot(conn, "mtti", Decimal("1000"), DAY1, DAY2, calculated_at=calc(5))
        factories.snapshot(conn, "mtti", Decimal("2500.125"), DAY2, DAY3, calculated_at=calc(1))
        # success_rate: same period end, two periods: the newest calculated_at wins; NULL value
        factories.snapshot(
            conn, "success_rate", Decimal("80"), DAY1, DAY3, calculated_at=calc(1), unit="percent"
        )
        factories.snapshot(
            conn, "success_rate", None, DAY2, DAY3, calculated_at=calc(2), unit="percent"
        )
        factories.snapshot(
            conn,
            "factory_throughput",
            Decimal("40"),
            DAY2,
            DAY3,
            calculated_at=calc(2),
            unit="runs_per_day",
        )
        # not a registry KPI (the platform trigger's): ignored
        factories.snapshot(
            conn, "run_success", 1, DAY2, DAY3, calculated_at=calc(2), unit="boolean"
        )


def test_factory_json(factory_data, db_url):
    result = run_cli(["kpis", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "success"
    data = {row["kpi_name"]: row for row in document["data"]}
    assert list(data) == ["mtti", "success_rate", "factory_throughput", "steering_accuracy"]
    assert all(set(row) == JSON_KEYS for row in document["data"])
    assert data["mtti"] == {
        "kpi_name": "mtti",
        "level": "factory",
        "scope_id": None,
        "product": None,
        "value": 2500.125,
        "unit": "ms",
        "kpi_version": "1.0.0",
        "period_start": "2026-01-06T00:00:00+00:00",
        "period_end": "2026-01-07T00:00:00+00:00",
        "calculated_at": "2026-01-10T01:00:00+00:00",
    }
    assert data["success_rate"]["value"] is None
    assert data["success_rate"]["period_start"] == "2026-01-06T00:00:00+00:00"
    assert data["factory_throughput"]["value"] == 40
    never = data["steering_accuracy"]
    assert never["value"] is None and never["calculated_at"] is None
    assert never["unit"] == "percent" and never["kpi_version"] == "1.0.0"


def test_factory_table(factory_data, db_url):
    result = run_cli(["kpis"], db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "factory KPIs (latest)"
    assert lines[1].split() == [
        "kpi_name",
        "value",
        "unit",
        "kpi_version",
        "period",
        "calculated_at",
        "trend",
    ]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert rows["mtti"].split() == [
        "mtti",
        "2500.13",
        "ms",
        "1.0.0",
        "2026-01-06",
        "00:00",
        "..",
        "2026-01-07",
        "00:00",
        "2026-01-10",  # tables shorten timestamps (UTC); JSON and CSV keep ISO 8601
        "01:00:00",
        "▁█",  # the trend: the same one-day window the day before (1000), then 2500.125
        "↑",
        "+1500.13",
    ]
    assert " no data " in rows["success_rate"] and " 0 " not in rows["success_rate"]
    assert rows["factory_throughput"].split()[1] == "40"
    assert "never computed" in rows["steering_accuracy"]


def test_factory_csv(factory_data, db_url):
    result = run_cli(["kpis", "--format", "csv"], db_url)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "kpi_name",
        "level",
        "scope_id",
        "product",
        "value",
        "unit",
        "kpi_version",
        "period_start",
        "period_end",
        "calculated_at",
    ]
    by_name = {row["kpi_name"]: row for row in rows}
    assert by_name["mtti"]["value"] == "2500.125"
    assert by_name["success_rate"]["value"] == ""
    assert by_name["steering_accuracy"]["calculated_at"] == ""


@pytest.fixture
def product_data(engine):
    with engine.begin() as conn:
        app = factories.repository(conn, "acme", "app")
        api = factories.repository(conn, "acme", "api")
        factories.repository(conn, "acme", "idle")  # no snapshots: not listed
        factories.snapshot(
            conn,
            "product_success_rate",
            Decimal("50"),
            DAY1,
            DAY2,
            calculated_at=calc(1),
            level="product",
            scope_id=app,
            unit="percent",
        )
        factories.snapshot(
            conn,
            "product_success_rate",
            Decimal("75"),
            DAY2,
            DAY3,
            calculated_at=calc(1),
            level="product",
            scope_id=app,
            unit="percent",
        )
        factories.snapshot(
            conn,
            "product_avg_duration",
            Decimal("1200"),
            DAY2,
            DAY3,
            calculated_at=calc(1),
            level="product",
            scope_id=app,
        )
        factories.snapshot(
            conn,
            "product_success_rate",
            Decimal("100"),
            DAY1,
            DAY2,
            calculated_at=calc(3),
            level="product",
            scope_id=api,
            unit="percent",
        )
    return {"app": app, "api": api}


def test_product_level(product_data, db_url):
    result = run_cli(["kpis", "--level", "product", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert [(row["product"], row["kpi_name"], row["value"]) for row in data] == [
        ("acme/api", "product_success_rate", 100),
        ("acme/app", "product_success_rate", 75),
        ("acme/app", "product_avg_duration", 1200),
    ]
    assert data[0]["scope_id"] == str(product_data["api"]) and data[0]["level"] == "product"


def test_product_filter(product_data, db_url):
    result = run_cli(["kpis", "--product", "acme/api", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert [(row["product"], row["kpi_name"]) for row in data] == [
        ("acme/api", "product_success_rate")
    ]
    table = run_cli(["kpis", "--product", "acme/app"], db_url)
    assert table.exit_code == 0
    assert "acme/api" not in table.stdout and table.stdout.count("acme/app") == 2
    lines = table.stdout.splitlines()
    assert lines[1].split()[:3] == ["kpi_name", "product", "value"]
    assert lines[3].split()[:4] == ["product_success_rate", "acme/app", "75", "percent"]


def test_known_product_without_snapshots(product_data, db_url):
    result = run_cli(["kpis", "--product", "acme/idle", "--format", "json"], db_url)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"status": "success", "data": []}
    assert "no product-level snapshots for acme/idle" in result.stderr


def test_unknown_product_exit_1(product_data, db_url):
    result = run_cli(["kpis", "--product", "acme/nope"], db_url)
    assert result.exit_code == 1
    assert "no such product acme/nope" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--product", "acme"], "'acme'"),
        (["--product", "acme/"], "'acme/'"),
        (["--product", "a/b/c"], "'a/b/c'"),
        (["--level", "factory", "--product", "acme/app"], "--product 'acme/app'"),
        (["--level", "run"], "'run'"),
        (["--format", "yaml"], "'yaml'"),
    ],
)
def test_bad_inputs_exit_2(db_url, args, named):
    result = run_cli(["kpis", *args], db_url)
    assert result.exit_code == 2, result.output
    assert named in result.stderr and result.stdout == ""
    assert "Traceback" not in result.output


def test_empty_database_lists_factory_kpis_as_never_computed(db_url):
    result = run_cli(["kpis", "--format", "json"], db_url)
    assert result.exit_code == 0
    data = json.loads(result.stdout)["data"]
    assert [row["kpi_name"] for row in data] == [
        "mtti",
        "success_rate",
        "factory_throughput",
        "steering_accuracy",
    ]
    assert all(row["calculated_at"] is None for row in data)


def test_rerun_is_read_only(factory_data, db_url, engine):
    first = run_cli(["kpis", "--format", "json"], db_url).stdout
    assert run_cli(["kpis", "--format", "json"], db_url).stdout == first
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(kpi_snapshots)).scalar() == 6


def test_service_latest_values(factory_data, engine):
    with engine.connect() as conn:
        values = service.latest_values(conn, level="factory")
    assert [(v.kpi_name, v.value) for v in values] == [
        ("mtti", Decimal("2500.125")),
        ("success_rate", None),
        ("factory_throughput", Decimal("40")),
        ("steering_accuracy", None),
    ]
    assert values[3].never_computed and not values[1].never_computed


def test_a_period_not_yet_over_does_not_hide_the_last_cycle(engine, db_url):
    """A backfill bucket of the current day ends tonight; the aggregate's period ended now."""
    from datetime import timedelta

    now = datetime.now(UTC)
    with engine.begin() as conn:
        factories.snapshot(
            conn,
            "mtti",
            100,
            now - timedelta(hours=24),
            now - timedelta(minutes=3),
            calculated_at=now,
        )
        factories.snapshot(
            conn,
            "mtti",
            999,
            now - timedelta(hours=1),
            now + timedelta(hours=23),
            calculated_at=now,
        )
    result = run_cli(["kpis", "--format", "json"], db_url)
    values = {item["kpi_name"]: item["value"] for item in json.loads(result.stdout)["data"]}
    assert values["mtti"] == 100


def test_the_table_shows_each_kpi_s_trend(db_url, engine):
    """The same one-day window on the days before (one missing), oldest first, and the change
    since the previous value; JSON and CSV stay the values of docs/OUTPUT.md."""
    end = datetime(2026, 1, 10, tzinfo=UTC)
    with engine.begin() as conn:
        for days_back, value in ((0, "40"), (1, "20"), (3, "10")):
            window_end = end - timedelta(days=days_back)
            factories.snapshot(
                conn, "mtti", Decimal(value), window_end - timedelta(days=1), window_end
            )
    result = run_cli(["kpis"], db_url)
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1]
    assert header.split()[-1] == "trend"
    mtti = next(line for line in result.stdout.splitlines() if line.startswith("mtti "))
    assert mtti.rstrip().endswith("  ▁ ▃█ ↑ +20")  # 10, (none), 20, 40
    as_csv = run_cli(["kpis", "--format", "csv"], db_url).stdout
    assert "trend" not in as_csv.splitlines()[0]
