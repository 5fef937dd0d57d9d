"""`kpictl freshness` by the conventions of the monitoring tools that run it: a Nagios plugin's
usage errors are UNKNOWN (3) with a status line, -w/-c, an atomically written Prometheus textfile
that prometheus_client's parser (and promtool, where installed) accept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.conftest import ENV_KEYS


def kpictl(args: list[str], url: str | None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    if url:
        base["KPICTL_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "kpictl", *args],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fresh_snapshots(engine, age: timedelta) -> None:
    calculated = datetime.now(UTC) - age
    with engine.begin() as conn:
        for name in ("mtti", "success_rate", "factory_throughput", "steering_accuracy"):
            conn.execute(
                text(
                    "INSERT INTO kpi_snapshots (kpi_name, level, value, unit, period_start, "
                    "period_end, calculated_at) VALUES (:n, 'factory', 1, 'x', :s, :e, :c)"
                ),
                {
                    "n": name,
                    "s": calculated - timedelta(hours=24),
                    "e": calculated,
                    "c": calculated,
                },
            )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kpi", "nope"], "KPI FRESHNESS UNKNOWN - unknown KPI 'nope' for --kpi"),
        (["--level", "nope"], "KPI FRESHNESS UNKNOWN - usage: invalid value for '--level'"),
        (["--bogus"], "KPI FRESHNESS UNKNOWN - usage: no such option: --bogus"),
        (["-w", "30m", "-c", "10m"], "KPI FRESHNESS UNKNOWN - --warn-after (1800s) is greater"),
        (["--warn-after", "soon"], "KPI FRESHNESS UNKNOWN - invalid duration for --warn-after"),
    ],
)
def test_a_nagios_usage_error_is_unknown_3_with_a_status_line(db_url, args, message):
    result = kpictl(["freshness", "--format", "nagios", *args], db_url)
    assert result.returncode == 3, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(message)
    assert "Traceback" not in result.stderr


def test_a_nagios_configuration_error_is_unknown_too(tmp_path):
    result = kpictl(["freshness", "--format", "nagios"], "mysql://h/d")
    assert result.returncode == 3
    assert result.stdout.startswith("KPI FRESHNESS UNKNOWN - invalid database URL")
    result = kpictl(
        ["freshness", "--format", "nagios"],
        None,
        INVOCATION_ID="x",
        KPICTL_DATA_DIR=str(tmp_path / "d"),
    )
    assert result.returncode == 3
    assert result.stdout.startswith("KPI FRESHNESS UNKNOWN - no database configured")


def test_other_formats_keep_exit_2_for_usage_errors(db_url):
    result = kpictl(["freshness", "--format", "json", "--kpi", "nope"], db_url)
    assert result.returncode == 2
    document = json.loads(result.stdout)  # docs/OUTPUT.md: a failure is a document too
    assert document["status"] == "error" and document["error"]["exit_code"] == 2
    assert document["error"]["message"].startswith("unknown KPI 'nope' for --kpi")
    result = kpictl(["freshness", "--level", "nope"], db_url)
    assert result.returncode == 2


def test_w_and_c_are_the_thresholds(db_url, engine):
    fresh_snapshots(engine, timedelta(minutes=20))
    assert (
        kpictl(["freshness", "--format", "nagios", "-w", "30m", "-c", "1h"], db_url).returncode == 0
    )
    stale = kpictl(["freshness", "--format", "nagios", "-w", "10m", "-c", "1h"], db_url)
    assert stale.returncode == 1 and stale.stdout.startswith("KPI FRESHNESS WARNING")
    assert ";600;3600;" in stale.stdout  # the thresholds in the perfdata
    expired = kpictl(["freshness", "--format", "nagios", "-w", "5m", "-c", "10m"], db_url)
    assert expired.returncode == 2 and expired.stdout.startswith("KPI FRESHNESS CRITICAL")


def test_output_writes_the_textfile_atomically_and_prints_nothing(db_url, engine, tmp_path):
    fresh_snapshots(engine, timedelta(minutes=1))
    target = tmp_path / "kpictl.prom"
    target.write_text("old contents\n")
    inode_before = target.stat().st_ino
    result = kpictl(["freshness", "--format", "prometheus", "--output", str(target), "-q"], db_url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert target.stat().st_ino != inode_before  # replaced by a rename, not rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["kpictl.prom"]  # no temporary file left
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    assert families["kpictl_freshness_check_success"].samples[0].value == 1
    ages = families["kpictl_kpi_age_seconds"].samples
    assert {s.labels["kpi"] for s in ages} == {
        "mtti",
        "success_rate",
        "factory_throughput",
        "steering_accuracy",
    }
    assert all(55 <= s.value <= 300 for s in ages)


def test_output_when_the_check_cannot_run_says_so_in_the_file(tmp_path):
    target = tmp_path / "kpictl.prom"
    result = kpictl(
        ["freshness", "--format", "prometheus", "--output", str(target)],
        "postgresql://kpictl@127.0.0.1:1/none?connect_timeout=2",
    )
    assert result.returncode == 3 and result.stdout == ""
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    assert families["kpictl_freshness_check_success"].samples[0].value == 0


def test_output_errors(db_url, tmp_path):
    table = kpictl(["freshness", "--output", str(tmp_path / "x")], db_url)
    assert table.returncode == 2 and "--output writes json, nagios or prometheus" in table.stderr
    missing_dir = tmp_path / "no" / "such" / "kpictl.prom"
    result = kpictl(["freshness", "--format", "prometheus", "--output", str(missing_dir)], db_url)
    assert result.returncode == 2  # checked before any SQL
    assert f"directory {missing_dir.parent} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_promtool_accepts_the_exposition(db_url, engine, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: .ci/run installs Debian's prometheus")
        pytest.skip("promtool is not installed here (Debian: apt install prometheus)")
    fresh_snapshots(engine, timedelta(minutes=1))
    exposition = kpictl(["freshness", "--format", "prometheus"], db_url).stdout
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
