"""Tables for people (`kpictl/cli/tables.py`), on a real pseudo-terminal at 80 and 200 columns
and through a pipe: ids never cut, optional columns left out with a footnote when too narrow,
numbers right-aligned, timestamps shortened."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from datetime import timedelta

import pytest

from tests import factories
from tests.conftest import ENV_KEYS, run_process


def on_terminal(args: list[str], url: str, columns: int) -> str:
    """`python -m kpictl ARGS` with a pseudo-terminal of `columns` as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and k != "COLUMNS"}
    env |= {"KPICTL_DATABASE_URL": url, "NO_COLOR": "1", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kpictl", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    output = b""
    while select.select([master], [], [], 60)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0, output.decode()
    os.close(master)
    return output.decode().replace("\r\n", "\n")


@pytest.fixture
def jobs(engine):
    at = factories.at
    with engine.begin() as conn:
        return [
            factories.job(
                conn,
                kind,
                status,
                at(hour),
                completed_at=at(hour) + timedelta(seconds=hour),
                duration_ms=duration,
                snapshots_created=snapshots,
                error=error,
            )
            for hour, kind, status, duration, snapshots, error in (
                (1, "aggregate", "completed", 3250, 42, None),
                (2, "history_fill", "failed", 17, 0, "2 tenant(s) failed: [/x] overflow [y]"),
                (3, "backfill", "completed", 123456, 1234, None),
            )
        ]


def test_an_80_column_terminal_shows_whole_ids_and_says_what_it_left_out(db_url, jobs):
    shown = on_terminal(["jobs"], db_url, 80)
    for job_id in jobs:
        assert str(job_id) in shown
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    assert "(left out at this width: error" in shown
    assert "history_fill" in shown and "…" not in shown


def test_a_200_column_terminal_shows_every_column(db_url, jobs):
    shown = on_terminal(["jobs"], db_url, 200)
    header = next(line for line in shown.splitlines() if " id " in f" {line} ")
    for column in ("id", "job_type", "status", "started_at", "duration_ms", "error"):
        assert column in header.split()
    assert "left out" not in shown
    assert "2 tenant(s) failed: [/x] overflow [y]" in shown  # text, never rich markup
    assert "2026-01-05 01:00:00" in shown and "+00:00" not in shown


def test_a_piped_table_is_whole_with_numbers_right_aligned(db_url, jobs):
    result = run_process(["jobs"], db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    end = header.index("duration_ms") + len("duration_ms")
    durations = [line[:end].split()[-1] for line in lines[2:]]
    assert durations == ["123456", "17", "3250"]  # each ends under the header's end
    assert all(str(job_id) in result.stdout for job_id in jobs)
    assert "2026-01-05 03:00:00" in result.stdout and "T03:00:00" not in result.stdout
