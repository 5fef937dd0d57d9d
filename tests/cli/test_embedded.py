"""The embedded default: no URL at all, a fresh HOME, concurrent first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENV_KEYS
from tests.helpers import stop_embedded_server


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.pop("KPICTL_DATA_DIR", None)
    env.pop("XDG_DATA_HOME", None)
    env["HOME"] = str(home)
    return env


@pytest.fixture
def fresh_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop_embedded_server(home / ".local" / "share" / "kpictl" / "pgdata")


def test_two_concurrent_first_runs_share_one_server(fresh_home):
    env = _env(fresh_home)
    # no terminal here: --embedded asks for the embedded server (cron's rule, docs/OPERATIONS.md)
    command = [sys.executable, "-m", "kpictl", "migrate", "--with-sources", "--embedded"]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in processes]
    for code, _stdout, stderr in results:
        assert code == 0, stderr
    # the notice is printed by whoever started the server (both, when they raced to start it)
    assert any("started the embedded PostgreSQL server" in stderr for _, _, stderr in results)
    assert (fresh_home / ".local" / "share" / "kpictl" / "pgdata" / "PG_VERSION").exists()

    doctors = [
        subprocess.Popen(
            [sys.executable, "-m", "kpictl", "doctor"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in doctors:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stdout + stderr
        assert "embedded" in stdout
