"""--read-url / KPICTL_READ_DATABASE_URL: the commands that only read use it (a real streaming
standby of a private PostgreSQL 15 cluster here), the commands that write refuse the flag and
ignore the variable, and `doctor` reports the replica's lag."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from kpictl.db.engine import make_engine
from tests import factories as f
from tests.conftest import run_cli, test_settings
from tests.helpers import scalar, wait_for

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://kpictl@/kpictl?host=/nonexistent-kpictl-socket-dir"


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def primary_and_standby() -> Iterator[tuple[str, str]]:
    """A private PostgreSQL 15 cluster with a database `kpictl` migrated, and a streaming
    standby of it (pg_basebackup -R) on a socket directory of its own."""
    if not (PG15_BIN / "pg_basebackup").exists():
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL 15 in CI: .ci/run installs Debian's postgresql-15")
        pytest.skip(f"no PostgreSQL 15 binaries in {PG15_BIN} (Debian's postgresql-15)")
    primary_dir = Path(tempfile.mkdtemp(prefix="kpictl-primary-"))
    standby_dir = Path(tempfile.mkdtemp(prefix="kpictl-standby-"))
    for directory in (primary_dir, standby_dir):
        directory.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(standby_dir, "postgres")
    ci_pg15 = str(REPO / ".ci" / "pg15")
    try:
        started = subprocess.run(
            [ci_pg15, str(primary_dir)], capture_output=True, text=True, timeout=120, check=True
        )
        admin_url = started.stdout.strip()
        with make_engine(admin_url, test_settings(admin_url)).connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("CREATE DATABASE kpictl")
            )
        primary_url = admin_url.replace("/postgres?", "/kpictl?")
        assert run_cli(["migrate", "--with-sources"], primary_url).exit_code == 0
        data = standby_dir / "data"
        subprocess.run(
            as_postgres(
                [
                    str(PG15_BIN / "pg_basebackup"),
                    "-h",
                    str(primary_dir),
                    "-U",
                    "postgres",
                    "-D",
                    str(data),
                    "-R",
                    "--checkpoint=fast",
                    "-X",
                    "stream",
                ]
            ),
            check=True,
            timeout=120,
            capture_output=True,
        )
        options = f"-c listen_addresses='' -c unix_socket_directories='{standby_dir}' -c max_connections=200"
        subprocess.run(
            as_postgres(
                [
                    str(PG15_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(standby_dir / "server.log"),
                    "-w",
                    "-o",
                    options,
                    "start",
                ]
            ),
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
        yield primary_url, f"postgresql+psycopg://postgres@/kpictl?host={standby_dir}"
    finally:
        subprocess.run(
            as_postgres(
                [str(PG15_BIN / "pg_ctl"), "-D", str(standby_dir / "data"), "-m", "fast", "stop"]
            ),
            timeout=120,
            capture_output=True,
        )
        subprocess.run([ci_pg15, "stop", str(primary_dir)], timeout=120)
        shutil.rmtree(primary_dir, ignore_errors=True)
        shutil.rmtree(standby_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def replicated(primary_and_standby) -> tuple[str, str]:
    """A snapshot, a job and a tenant's history written on the primary, visible on the standby."""
    primary_url, standby_url = primary_and_standby
    engine = make_engine(primary_url, test_settings(primary_url))
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    with engine.begin() as conn:
        f.snapshot(conn, "mtti", Decimal("1234.5"), end - timedelta(days=1), end)
        f.job(conn, "aggregate", "completed", end, completed_at=end, duration_ms=10)
        acme = f.tenant(conn, "acme")
        f.history_rows(
            conn, acme, [{"as_of": datetime(2026, 1, 5).date(), "aiv_pct": Decimal("12.5")}]
        )
    engine.dispose()
    standby = make_engine(standby_url, test_settings(standby_url))
    wait_for(lambda: scalar(standby, "SELECT count(*) FROM kpi_history") == 1)
    standby.dispose()
    return primary_url, standby_url


READS = [
    ["kpis", "--format", "json"],
    ["freshness", "--format", "json"],
    ["jobs", "--format", "json"],
    ["history", "export", "--tenant", "acme"],
]


@pytest.mark.parametrize("args", READS, ids=lambda args: " ".join(args[:2]))
def test_read_commands_read_the_replica_only(replicated, args):
    """The primary's URL is unreachable here: a read command that touched it would fail."""
    _primary, standby = replicated
    result = run_cli(args, UNREACHABLE, env={"KPICTL_READ_DATABASE_URL": standby})
    # freshness judges the KPIs never computed here as missing (2): a verdict, read from the replica
    assert result.exit_code in (0, 2), result.output
    assert result.stdout and "Traceback" not in result.output
    flag = run_cli([*args, "--read-url", standby], UNREACHABLE)
    assert flag.exit_code == result.exit_code
    assert flag.stdout.splitlines()[:3] == result.stdout.splitlines()[:3]


def test_the_replica_serves_the_values_and_the_report(replicated, tmp_path):
    _primary, standby = replicated
    values = json.loads(
        run_cli(["kpis", "--format", "json", "--read-url", standby], UNREACHABLE).stdout
    )
    assert [row["value"] for row in values["data"] if row["kpi_name"] == "mtti"] == [1234.5]
    exported = run_cli(
        ["history", "export", "--tenant", "acme", "--read-url", standby], UNREACHABLE
    )
    assert exported.stdout.splitlines()[1] == "2026-01-05,12.50,,,,,"
    page = tmp_path / "kpis.html"
    result = run_cli(["report", "--output", str(page), "--read-url", standby], UNREACHABLE)
    assert result.exit_code == 0, result.output
    assert "1234.5" in page.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["aggregate"],
        ["backfill", "--since", "2026-01-01"],
        ["retention"],
        ["history", "fill"],
        ["migrate"],
    ],
    ids=lambda args: args[0] if args[0] != "history" else "history-fill",
)
def test_write_commands_refuse_the_flag(replicated, args):
    primary, standby = replicated
    jobs_before = scalar(
        make_engine(primary, test_settings(primary)), "SELECT count(*) FROM kpi_aggregation_jobs"
    )
    result = run_cli([*args, "--read-url", standby], primary)
    assert result.exit_code == 2, result.output
    assert "--read-url is for the commands that only read" in result.stderr
    assert "Traceback" not in result.output
    engine = make_engine(primary, test_settings(primary))
    assert scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs") == jobs_before


def test_write_commands_ignore_the_variable_and_write_the_primary(replicated):
    primary, standby = replicated
    result = run_cli(["aggregate"], primary, env={"KPICTL_READ_DATABASE_URL": standby})
    assert result.exit_code == 0, result.output
    engine = make_engine(primary, test_settings(primary))
    assert (
        scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs WHERE status = 'completed'") >= 2
    )


def test_doctor_reports_the_replica_and_its_lag(replicated):
    primary, standby = replicated
    result = run_cli(["doctor", "--format", "json", "--read-url", standby], primary)
    assert result.exit_code == 0, result.output
    checks = {check["name"]: check for check in json.loads(result.stdout)["data"]["checks"]}
    replica = checks["read replica"]
    assert replica["status"] == "ok"
    assert (
        "standby, lag " in replica["detail"]
        and "bytes of WAL behind the primary" in replica["detail"]
    )
    assert "(from --read-url)" in replica["detail"]


def test_doctor_warns_when_the_read_url_is_not_a_standby(replicated):
    primary, _standby = replicated
    result = run_cli(
        ["doctor", "--format", "json"], primary, env={"KPICTL_READ_DATABASE_URL": primary}
    )
    checks = {check["name"]: check for check in json.loads(result.stdout)["data"]["checks"]}
    assert checks["read replica"]["status"] == "warn"
    assert "not a standby" in checks["read replica"]["detail"]


def test_doctor_fails_when_the_replica_is_unreachable(replicated):
    primary, _standby = replicated
    result = run_cli(["doctor", "--format", "json", "--read-url", UNREACHABLE], primary)
    assert result.exit_code == 1
    checks = {check["name"]: check for check in json.loads(result.stdout)["data"]["checks"]}
    assert checks["read replica"]["status"] == "fail"


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["kpis", "--read-url", ""], "--read-url"),
        ({"KPICTL_READ_DATABASE_URL": ""}, ["kpis"], "KPICTL_READ_DATABASE_URL"),
        ({}, ["kpis", "--read-url", "mysql://x/y"], "--read-url"),
    ],
    ids=["empty-flag", "empty-variable", "not-postgres"],
)
def test_bad_read_urls_are_usage_errors(db_url, env, args, message):
    result = run_cli(args, db_url, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_the_password_of_a_read_url_is_never_shown(db_url):
    result = run_cli(
        ["kpis", "--read-url", "postgresql://u:s3cret-pw@/kpictl?host=/nonexistent"], db_url
    )
    assert result.exit_code == 69
    assert "s3cret-pw" not in result.output
