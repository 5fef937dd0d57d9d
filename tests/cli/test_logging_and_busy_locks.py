"""Log lines as operators' tools read them (journald priorities, JSON lines with the job ID,
KPICTL_LOG_FORMAT / KPICTL_LOG_LEVEL), and a busy lock that is an info line, not an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import text

from tests import factories
from tests.conftest import ENV_KEYS
from tests.helpers import AT_GATE, scalar, spawn, step_gate, wait_for


def env_for(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and k != "JOURNAL_STREAM"}
    return {**env, "KPICTL_DATABASE_URL": url, **extra}


def run(args: list[str], env: dict[str, str], stderr_path=None) -> tuple[int, str, str]:
    """Run kpictl; with `stderr_path`, its stderr is that file (so its device:inode is known)."""
    if stderr_path is None:
        done = subprocess.run(
            [sys.executable, "-m", "kpictl", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout, done.stderr
    with open(stderr_path, "w") as err:
        done = subprocess.run(
            [sys.executable, "-m", "kpictl", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=120,
        )
    return done.returncode, done.stdout, stderr_path.read_text()


def journal_stream_of(path) -> str:
    status = os.stat(path)
    return f"{status.st_dev}:{status.st_ino}"


def test_journald_priorities_when_stderr_is_the_journal_stream(db_url, tmp_path):
    err = tmp_path / "stderr"
    err.touch()
    env = env_for(db_url, JOURNAL_STREAM=journal_stream_of(err))
    code, _, stderr = run(["aggregate", "--period-hours", "24"], env, err)
    assert code == 0
    lines = stderr.splitlines()
    assert lines and all(line.startswith("<6>") for line in lines), stderr
    code, _, stderr = run(["kpis", "--level", "nope"], env, err)
    assert code == 2
    # a usage error from the command line is Typer's own text; an error kpictl reports:
    code, _, stderr = run(
        ["aggregate", "--period-hours", "24", "--database-url", "mysql://h/d"], env, err
    )
    assert code == 2
    assert stderr.splitlines()[0].startswith("<3>kpictl: error: invalid database URL")


def test_no_priorities_without_the_journal_stream_or_when_it_is_not_stderr(db_url, tmp_path):
    err = tmp_path / "stderr"
    code, _, stderr = run(["aggregate", "--period-hours", "24"], env_for(db_url), err)
    assert code == 0 and stderr and not any(line.startswith("<") for line in stderr.splitlines())
    other = tmp_path / "elsewhere"
    other.touch()  # inherited from a service, but this process's stderr went elsewhere
    env = env_for(db_url, JOURNAL_STREAM=journal_stream_of(other))
    code, _, stderr = run(["aggregate", "--period-hours", "24"], env, err)
    assert code == 0 and not any(line.startswith("<") for line in stderr.splitlines())


def test_kpictl_log_format_json_gives_json_lines_with_the_job_id(db_url, engine):
    code, _, stderr = run(
        ["aggregate", "--period-hours", "24"], env_for(db_url, KPICTL_LOG_FORMAT="json")
    )
    assert code == 0
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert entries and {entry["level"] for entry in entries} == {"info"}
    with engine.connect() as conn:
        job_id = conn.execute(text("SELECT id::text FROM kpi_aggregation_jobs")).scalar_one()
    assert {entry.get("job_id") for entry in entries if "job_id" in entry} == {job_id}
    assert any(job_id in entry["message"] for entry in entries if entry.get("job_id"))


def test_kpictl_log_level(db_url):
    code, _, stderr = run(
        ["aggregate", "--period-hours", "24"], env_for(db_url, KPICTL_LOG_LEVEL="warning")
    )
    assert (code, stderr) == (0, "")
    code, _, stderr = run(
        ["aggregate", "--period-hours", "24", "-v"], env_for(db_url, KPICTL_LOG_LEVEL="error")
    )
    assert code == 0 and stderr  # -v wins over the variable
    code, stdout, stderr = run(["kpis"], env_for(db_url, KPICTL_LOG_LEVEL="loud"))
    assert code == 2 and stdout == ""
    assert "invalid KPICTL_LOG_LEVEL: 'loud' (use one of debug, info, warning, error)" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("command", "step"),
    # the first run waits at its step's gate, holding its lock, until both others have exited
    [(["history", "fill"], "fill"), (["retention"], "retention")],
    ids=["history-fill", "retention"],
)
def test_two_at_once_one_runs_one_exits_75_and_quiet_means_silent(db_url, engine, command, step):
    with engine.begin() as conn:
        acme = factories.tenant(conn, "acme")
        factories.avi_report(conn, acme, date(2026, 1, 5))
    with step_gate(engine) as open_gate:
        first = spawn(command, db_url, KPICTL_DEBUG_STEP_GATE=step)
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 1)  # it holds its lock, mid-run
            quiet = run([*command, "-q"], env_for(db_url))
            assert quiet == (75, "", "")  # nothing for cron to mail
            told = run(command, env_for(db_url))
            assert told[0] == 75 and told[1] == ""
            assert "error" not in told[2] and "lock" in told[2]  # an info line, not an error
            open_gate()
            _, stderr = first.communicate(timeout=120)
            assert first.returncode == 0, stderr
        finally:
            if first.poll() is None:
                first.kill()
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM kpi_aggregation_jobs")).scalars().all()
    assert statuses == ["completed"]  # the refused runs wrote no job row
