"""Each setting an operator sets once (config.SETTINGS) through the commands that use it, from
every source: flag > environment > config file > default; the per-KPI freshness thresholds;
the deprecated period variable; and `kpictl doctor` naming where each value came from."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from kpictl.errors import ExitCode
from tests.conftest import run_cli


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kpictl.toml"
    path.write_text(body, encoding="utf-8")
    return path


# --- period_hours (aggregate) ----------------------------------------------------------------


def period_hours(db_url: str, args: list[str], env: dict[str, str]) -> tuple[float, str]:
    result = run_cli(["aggregate", "--dry-run", "--format", "json", *args], db_url, env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["data"]
    span = datetime.fromisoformat(document["period_end"]) - datetime.fromisoformat(
        document["period_start"]
    )
    return span / timedelta(hours=1), result.stderr


@pytest.mark.parametrize(
    ("args", "env", "hours"),
    [
        ([], {}, 24),  # default
        ([], {"config": "period_hours = 6"}, 6),  # file over default
        ([], {"config": "period_hours = 6", "KPICTL_PERIOD_HOURS": "12"}, 12),  # env over file
        (["--period-hours", "2"], {"config": "period_hours = 6", "KPICTL_PERIOD_HOURS": "12"}, 2),
        ([], {"KPICTL_PERIOD_HOURS": "12", "KPI_AGGREGATION_PERIOD_HOURS": "3"}, 12),  # new name
    ],
)
def test_period_hours_precedence(db_url, tmp_path, args, env, hours):
    env = dict(env)
    if "config" in env:
        env["KPICTL_CONFIG"] = str(write_config(tmp_path, env.pop("config") + "\n"))
    got, stderr = period_hours(db_url, args, env)
    assert got == hours
    assert "deprecated" not in stderr


def test_the_old_period_variable_still_works_with_a_warning(db_url):
    got, stderr = period_hours(db_url, [], {"KPI_AGGREGATION_PERIOD_HOURS": "3"})
    assert got == 3
    assert (
        "kpictl: warning: KPI_AGGREGATION_PERIOD_HOURS is deprecated: set KPICTL_PERIOD_HOURS "
        "instead"
    ) in stderr


def test_a_period_out_of_range_in_the_config_file_names_the_key_and_the_file(db_url, tmp_path):
    path = write_config(tmp_path, "period_hours = 9000\n")
    result = run_cli(["aggregate", "--dry-run"], db_url, env={"KPICTL_CONFIG": str(path)})
    assert result.exit_code == ExitCode.USAGE
    assert (
        f"invalid value for period_hours from config file {path}: 9000 is not in 1-8760"
        in result.stderr
    )


# --- retention days --------------------------------------------------------------------------


def retention_days(db_url: str, args: list[str], env: dict[str, str]) -> dict[str, int]:
    result = run_cli(["retention", "--dry-run", "--format", "json", *args], db_url, env=env)
    assert result.exit_code == 0, result.output
    return {row["target"]: row["older_than_days"] for row in json.loads(result.stdout)["data"]}


def test_retention_days_precedence(db_url, tmp_path):
    assert retention_days(db_url, [], {}) == {"run": 90, "product": 90, "factory": 730, "jobs": 90}
    path = write_config(
        tmp_path,
        "[retention]\nrun_days = 10\nproduct_days = 20\nfactory_days = 30\njobs_days = 40\n",
    )
    env = {"KPICTL_CONFIG": str(path)}
    assert retention_days(db_url, [], env) == {"run": 10, "product": 20, "factory": 30, "jobs": 40}
    env |= {"KPICTL_RETENTION_PRODUCT_DAYS": "21", "KPICTL_RETENTION_JOBS_DAYS": "41"}
    assert retention_days(db_url, [], env) == {"run": 10, "product": 21, "factory": 30, "jobs": 41}
    flags = ["--jobs-days", "42", "--factory-days", "31"]
    assert retention_days(db_url, flags, env) == {
        "run": 10,
        "product": 21,
        "factory": 31,
        "jobs": 42,
    }


def test_a_bad_retention_variable_is_exit_2_naming_it(db_url):
    result = run_cli(["retention", "--dry-run"], db_url, env={"KPICTL_RETENTION_RUN_DAYS": "0"})
    assert result.exit_code == ExitCode.USAGE
    assert "invalid value for KPICTL_RETENTION_RUN_DAYS: 0 is not in" in result.stderr


# --- freshness thresholds, per KPI -----------------------------------------------------------


@pytest.fixture
def aged_snapshots(engine):
    """Factory snapshots of mtti 1000 s old and of success_rate 100 s old."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for name, age in (("mtti", 1000), ("success_rate", 100)):
            calculated = now - timedelta(seconds=age)
            conn.execute(
                text(
                    "INSERT INTO kpi_snapshots (kpi_name, level, value, unit, period_start, "
                    "period_end, calculated_at) VALUES (:n, 'factory', 1, 'x', :s, :e, :c)"
                ),
                {"n": name, "s": calculated - timedelta(hours=1), "e": calculated, "c": calculated},
            )


def statuses(db_url: str, args: list[str], env: dict[str, str]) -> tuple[dict[str, str], dict]:
    result = run_cli(
        ["freshness", "--kpi", "mtti", "--kpi", "success_rate", "--format", "json", *args],
        db_url,
        env=env,
    )
    document = json.loads(result.stdout)
    return {kpi["kpi_name"]: kpi["status"] for kpi in document["data"]}, document["overall"]


PER_KPI = """
[freshness]
warn_after = "50s"
error_after = "200s"

[freshness.kpis.mtti]
warn_after = "20m"
error_after = "1h"
"""


def test_freshness_thresholds_precedence_and_per_kpi(db_url, tmp_path, aged_snapshots):
    got, overall = statuses(db_url, [], {})
    assert got == {"mtti": "expired", "success_rate": "fresh"}  # 300 s / 900 s
    assert (overall["warn_after_seconds"], overall["error_after_seconds"]) == (300, 900)

    env = {"KPICTL_CONFIG": str(write_config(tmp_path, PER_KPI))}
    got, overall = statuses(db_url, [], env)
    # mtti by its own 20m/1h, success_rate (100 s) by the file's 50s/200s
    assert got == {"mtti": "fresh", "success_rate": "stale"}
    assert (overall["warn_after_seconds"], overall["error_after_seconds"]) == (50, 200)

    # a variable overrides the file, per-KPI values included
    env |= {"KPICTL_FRESHNESS_WARN_AFTER": "500", "KPICTL_FRESHNESS_ERROR_AFTER": "600"}
    got, _ = statuses(db_url, [], env)
    assert got == {"mtti": "expired", "success_rate": "fresh"}

    # a flag overrides the variable; the other threshold still comes from the variable
    got, overall = statuses(db_url, ["-w", "50"], env)
    assert got == {"mtti": "expired", "success_rate": "stale"}
    assert (overall["warn_after_seconds"], overall["error_after_seconds"]) == (50, 600)


def test_per_kpi_thresholds_show_in_the_nagios_perfdata(db_url, tmp_path, aged_snapshots):
    env = {"KPICTL_CONFIG": str(write_config(tmp_path, PER_KPI))}
    result = run_cli(
        ["freshness", "--kpi", "mtti", "--kpi", "success_rate", "--format", "nagios"],
        db_url,
        env=env,
    )
    perfdata = result.stdout.split("|", 1)[1].split()
    assert perfdata[0].startswith("mtti=") and perfdata[0].endswith("s;1200;3600;0;")
    assert perfdata[1].startswith("success_rate=") and perfdata[1].endswith("s;50;200;0;")


def test_a_per_kpi_warn_above_its_error_is_exit_2_naming_the_kpi(db_url, tmp_path):
    path = write_config(tmp_path, '[freshness.kpis.mtti]\nwarn_after = "2h"\nerror_after = "1h"\n')
    result = run_cli(["freshness"], db_url, env={"KPICTL_CONFIG": str(path)})
    assert result.exit_code == ExitCode.USAGE
    assert "is greater than --error-after (3600s) for KPI mtti" in result.stderr


def test_an_unknown_kpi_in_the_config_file_is_exit_2_naming_it(db_url, tmp_path):
    path = write_config(tmp_path, '[freshness.kpis.mtt]\nwarn_after = "2h"\n')
    result = run_cli(["freshness"], db_url, env={"KPICTL_CONFIG": str(path)})
    assert result.exit_code == ExitCode.USAGE
    assert f"config file {path}: freshness.kpis.mtt names no KPI (known: " in result.stderr


# --- doctor ----------------------------------------------------------------------------------


def test_doctor_shows_where_each_setting_came_from(db_url, tmp_path):
    path = write_config(tmp_path, 'period_hours = 6\nsource_timezone = "Europe/Berlin"\n' + PER_KPI)
    env = {"KPICTL_CONFIG": str(path), "KPICTL_RETENTION_RUN_DAYS": "30"}
    result = run_cli(["doctor", "--format", "json"], db_url, env=env)
    shown = {
        check["name"]: check["detail"]
        for check in json.loads(result.stdout)["data"]["checks"]
        if check["name"].startswith("setting ")
    }
    origin = f"config file {path}"
    assert shown == {
        "setting config": str(path),
        "setting period_hours": f"6 (from {origin})",
        "setting freshness.warn_after": f"50s (from {origin})",
        "setting freshness.error_after": f"200s (from {origin})",
        "setting retention.run_days": "30 (from KPICTL_RETENTION_RUN_DAYS)",
        "setting retention.product_days": "90 (from default)",
        "setting retention.factory_days": "730 (from default)",
        "setting retention.jobs_days": "90 (from default)",
        "setting freshness.kpis.mtti.warn_after": f"20m (from {origin})",
        "setting freshness.kpis.mtti.error_after": f"1h (from {origin})",
        "setting source_timezone": f"Europe/Berlin (from {origin})",
    }
