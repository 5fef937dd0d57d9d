"""`kpictl kpis --format prometheus [--output FILE]`: one gauge family per KPI with level and
scope labels, the period ends, and the jobs' health, parsed back with prometheus_client's
parser; values checked against the snapshots and job rows written here."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import factories as f
from tests.conftest import run_cli

END = datetime(2026, 1, 7, tzinfo=UTC)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def data(engine):
    with engine.begin() as conn:
        evil = f.repository(conn, "acme", 'we"ird\\name')
        app = f.repository(conn, "acme", "app")
        f.snapshot(conn, "mtti", Decimal("2500.5"), END - timedelta(days=1), END)
        f.snapshot(conn, "success_rate", None, END - timedelta(days=1), END, unit="percent")
        for scope, value in ((app, Decimal("80")), (evil, Decimal("12.25"))):
            f.snapshot(
                conn,
                "product_success_rate",
                value,
                END - timedelta(days=7),
                END,
                level="product",
                scope_id=scope,
            )
        done = END + timedelta(minutes=5)
        f.job(conn, "aggregate", "completed", END, completed_at=done, duration_ms=1500)
        f.job(
            conn,
            "aggregate",
            "completed",
            END - timedelta(hours=1),
            completed_at=END - timedelta(minutes=55),
            duration_ms=9000,
        )
        f.job(conn, "aggregate", "failed", END + timedelta(minutes=10), error="boom")
        f.job(conn, "retention", "failed", END, error="boom")
    return {"app": app, "evil": evil, "done": done}


def test_kpis_jobs_and_escaped_labels(db_url, data):
    result = run_cli(["kpis", "--format", "prometheus"], db_url)
    assert result.exit_code == 0, result.output
    got = samples(result.stdout)
    factory = (("level", "factory"), ("scope", "factory"), ("scope_id", ""))
    assert got[("kpictl_kpi_mtti", factory)] == 2500.5
    assert ("kpictl_kpi_success_rate", factory) not in got  # no data: no sample
    evil = (("level", "product"), ("scope", 'acme/we"ird\\name'), ("scope_id", str(data["evil"])))
    assert got[("kpictl_kpi_product_success_rate", evil)] == 12.25
    app = (("level", "product"), ("scope", "acme/app"), ("scope_id", str(data["app"])))
    assert got[("kpictl_kpi_product_success_rate", app)] == 80
    end = (("kpi", "mtti"), ("level", "factory"), ("scope", "factory"))
    assert got[("kpictl_kpi_period_end_timestamp_seconds", end)] == END.timestamp()
    aggregate, retention = (("job_type", "aggregate"),), (("job_type", "retention"),)
    assert got[("kpictl_job_last_success_timestamp_seconds", aggregate)] == data["done"].timestamp()
    assert got[("kpictl_job_last_duration_seconds", aggregate)] == 1.5
    assert got[("kpictl_job_failures_total", aggregate)] == 1
    assert got[("kpictl_job_failures_total", retention)] == 1
    assert ("kpictl_job_last_success_timestamp_seconds", retention) not in got


def test_level_and_product_narrow_it(db_url, data):
    only_factory = samples(
        run_cli(["kpis", "--format", "prometheus", "--level", "factory"], db_url).stdout
    )
    assert not any(dict(labels).get("level") == "product" for _, labels in only_factory)
    one = samples(
        run_cli(["kpis", "--format", "prometheus", "--product", "acme/app"], db_url).stdout
    )
    scopes = {dict(labels).get("scope") for name, labels in one if name.startswith("kpictl_kpi_")}
    assert scopes == {"acme/app"}


def test_output_is_written_atomically_and_passes_promtool(db_url, data, tmp_path):
    target = tmp_path / "kpis.prom"
    result = run_cli(["kpis", "--format", "prometheus", "--output", str(target)], db_url)
    assert result.exit_code == 0 and result.stdout == ""
    assert (
        samples(target.read_text())[("kpictl_job_failures_total", (("job_type", "aggregate"),))]
        == 1
    )
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=target.read_text(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_output_needs_the_prometheus_format(db_url, tmp_path):
    result = run_cli(["kpis", "--output", str(tmp_path / "x")], db_url)
    assert result.exit_code == 2
    assert "--output writes the prometheus text: add --format prometheus" in result.stderr
