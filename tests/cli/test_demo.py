"""`kpictl demo`: one command from nothing to KPIs on screen; re-running adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import text

from tests.conftest import ENV_KEYS, run_cli
from tests.helpers import stop_embedded_server

TABLES = (
    "workflow_executions",
    "agent_runs",
    "repositories",
    "tenants",
    "avi_reports",
    "vdp_vli_audit",
)


def row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in TABLES
        }


def test_demo_twice_and_reset(db_url, engine):
    first = run_cli(["demo"], db_url)
    assert first.exit_code == 0, first.output
    assert "factory KPIs (latest)" in first.stdout and "freshness" in first.stdout
    counts = row_counts(engine)
    # the sample's 14 days x 40 runs a day; 5 tenants
    assert counts["workflow_executions"] == 560 and counts["tenants"] == 5
    second = run_cli(["demo"], db_url)
    assert second.exit_code == 0, second.output
    assert "already loaded" in second.stdout
    assert row_counts(engine) == counts
    again = run_cli(["demo", "--reset"], db_url)
    assert again.exit_code == 0, again.output
    assert row_counts(engine) == counts
    with engine.connect() as conn:
        history = conn.execute(
            text("SELECT count(*) FROM kpi_history")
        ).scalar_one()  # superuser: no RLS
        jobs = (
            conn.execute(text("SELECT DISTINCT status FROM kpi_aggregation_jobs")).scalars().all()
        )
    assert history == 48  # 12 report weeks of each of the 4 tenants with reports (not the 5th)
    assert jobs == ["completed"]


def test_demo_on_the_embedded_default_in_a_fresh_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ENV_KEYS and k not in ("KPICTL_DATA_DIR", "XDG_DATA_HOME")
    }
    env["HOME"] = str(home)
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "kpictl", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, demo.stderr
        assert "started the embedded PostgreSQL server" in demo.stderr

        def kpictl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "kpictl", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        # no terminal here, but the demo set the embedded server up: the tour works as shown
        kpis = kpictl("kpis", "--format", "json")
        assert kpis.returncode == 0, kpis.stderr
        assert "embedded" not in kpis.stderr  # the notice is said when the server starts only
        values = {item["kpi_name"]: item["value"] for item in json.loads(kpis.stdout)["data"]}
        assert set(values) == {"mtti", "success_rate", "factory_throughput", "steering_accuracy"}
        assert all(value is not None for value in values.values())

        stopped = kpictl("demo", "--stop")
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert stopped.stdout.startswith("Stopped the embedded server (data kept in ")
        assert not (home / ".local/share/kpictl/pgdata/postmaster.pid").exists()
        again = kpictl("demo", "--stop")
        assert again.returncode == 0 and "is not running" in again.stdout

        restarted = kpictl("kpis", "--format", "json")  # starts it again, and says so
        assert restarted.returncode == 0, restarted.stderr
        assert "started the embedded PostgreSQL server" in restarted.stderr
        assert json.loads(restarted.stdout) == json.loads(kpis.stdout)
    finally:
        stop_embedded_server(home / ".local" / "share" / "kpictl" / "pgdata")
