"""docs/deploy/: the systemd units and the crontab say what the deployment guide promises, and
every `kpictl ...` command line in them names options that exist (`--help` exits 0)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
UNITS = DEPLOY / "systemd"
CRONTAB = DEPLOY / "crontab"
JOBS = ("aggregate", "history-fill", "retention", "freshness")
KPICTL_BIN = "/usr/local/bin/kpictl"
# `kpictl` as a word, then its arguments up to a shell operator or redirection.
KPICTL_COMMAND = re.compile(r"(?:^|[\s(/])kpictl\s+([^|;&)>\n]*)")


def read_unit(path: Path) -> configparser.RawConfigParser:
    """systemd allows repeated keys (the last wins for most); keys are case-sensitive."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def exec_starts(path: Path) -> list[str]:
    """Every ExecStart= line (repeated keys kept, which configparser would merge)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]


def cron_entries() -> list[tuple[str, str]]:
    """(schedule, command) of every job line; comments and VAR=value lines left out."""
    entries = []
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab job line: {line!r}"
        entries.append((" ".join(fields[:5]), fields[5]))
    return entries


def kpictl_args(command: str) -> list[str]:
    found = KPICTL_COMMAND.findall(command)
    assert len(found) == 1, f"expected one kpictl command in {command!r}"
    return found[0].split()


def unit_commands() -> list[list[str]]:
    commands = []
    for job in JOBS:
        for line in exec_starts(UNITS / f"kpictl-{job}.service"):
            assert line.startswith(f"{KPICTL_BIN} "), line
            commands.append(kpictl_args(line))
    return commands


def cron_commands() -> list[list[str]]:
    return [kpictl_args(command) for _, command in cron_entries()]


def test_every_job_has_a_service_and_a_timer():
    names = sorted(path.name for path in UNITS.iterdir())
    expected = [f"kpictl-{job}.{kind}" for job in JOBS for kind in ("service", "timer")]
    assert names == sorted([*expected, "kpictl-alert@.service"])


@pytest.mark.parametrize("job", JOBS)
def test_service_settings(job):
    unit = read_unit(UNITS / f"kpictl-{job}.service")
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert service["LoadCredential"] == "database-url:/etc/kpictl/database-url"
    assert service["TimeoutStopSec"] == "90"  # kpictl's 60 s graceful stop, plus margin
    assert service.get("DynamicUser") == "yes" or service.get("User") == "kpictl"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    # the URL is a credential, never in the environment of the unit
    text = (UNITS / f"kpictl-{job}.service").read_text()
    assert "DATABASE_URL=" not in text and "postgresql://" not in text
    assert len(exec_starts(UNITS / f"kpictl-{job}.service")) == 1


@pytest.mark.parametrize(
    ("job", "calendar"),
    [
        ("aggregate", "*:0/5"),
        ("history-fill", "*-*-* 04:00:00 UTC"),
        ("retention", "*-*-* 03:30:00 UTC"),
        ("freshness", "*:2/5"),
    ],
)
def test_timer_settings(job, calendar):
    unit = read_unit(UNITS / f"kpictl-{job}.timer")
    assert unit["Timer"]["OnCalendar"] == calendar
    # a missed freshness slot is not run at boot: it would alert before the aggregate caught up
    assert unit["Timer"]["Persistent"] == ("false" if job == "freshness" else "true")
    assert unit["Install"]["WantedBy"] == "timers.target"
    # no Unit= override: each timer starts the service of the same name
    assert "Unit" not in unit["Timer"]


LOCKING_JOBS = ("aggregate", "history-fill", "retention")


@pytest.mark.parametrize("job", LOCKING_JOBS)
def test_every_locking_unit_is_safe_on_every_host(job):
    """Every host may run every timer: exit 75 (lock held elsewhere) is success, and the
    timers of a lock are spread so that hosts do not all fire at the same second."""
    service = read_unit(UNITS / f"kpictl-{job}.service")
    assert "75" in service["Service"]["SuccessExitStatus"].split()
    timer = read_unit(UNITS / f"kpictl-{job}.timer")
    assert timer["Timer"].get("RandomizedDelaySec"), job


def test_aggregate_specifics():
    timer = read_unit(UNITS / "kpictl-aggregate.timer")
    assert timer["Timer"]["RandomizedDelaySec"] == "30s"
    service = read_unit(UNITS / "kpictl-aggregate.service")
    assert service["Service"]["SuccessExitStatus"] == "75"  # lock held by another run


def test_freshness_failure_hook():
    service = read_unit(UNITS / "kpictl-freshness.service")
    assert service["Unit"]["OnFailure"] == "kpictl-alert@%n.service"
    alert = read_unit(UNITS / "kpictl-alert@.service")
    assert alert["Service"]["Type"] == "oneshot"
    assert all("%i" in line for line in exec_starts(UNITS / "kpictl-alert@.service"))


def test_systemd_accepts_the_units(tmp_path):
    """`systemd-analyze verify` on copies whose ExecStart points at this checkout's kpictl."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    kpictl = Path(sys.executable).parent / "kpictl"
    for path in UNITS.iterdir():
        text = path.read_text(encoding="utf-8").replace(KPICTL_BIN, str(kpictl))
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    units = sorted(str(path) for path in tmp_path.iterdir())
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    calendars = [read_unit(UNITS / f"kpictl-{job}.timer")["Timer"]["OnCalendar"] for job in JOBS]
    result = subprocess.run(
        [analyze, "calendar", *calendars], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_crontab_schedule_matches_the_timers():
    schedules = {}
    for schedule, command in cron_entries():
        args = kpictl_args(command)
        schedules[" ".join(args[:2]) if args[0] == "history" else args[0]] = (schedule, command)
    assert {name: schedule for name, (schedule, _) in schedules.items()} == {
        "aggregate": "*/5 * * * *",
        "history fill": "0 4 * * *",
        "retention": "30 3 * * *",
        "freshness": "2-59/5 * * * *",
    }
    for name in ("aggregate", "history fill", "retention"):
        lock = name.replace(" ", "-")
        assert schedules[name][1].startswith(f"flock -n /run/lock/kpictl-{lock}.lock kpictl ")
    text = CRONTAB.read_text(encoding="utf-8")
    assert "CRON_TZ=UTC" in text and "KPICTL_DATABASE_URL_FILE=/etc/kpictl/database-url" in text


def test_units_and_crontab_run_the_same_commands():
    def without_quiet(args: list[str]) -> list[str]:
        return [arg for arg in args if arg != "-q"]

    assert sorted(map(without_quiet, unit_commands())) == sorted(
        map(without_quiet, cron_commands())
    )


@pytest.mark.parametrize(
    "args",
    [*unit_commands(), *cron_commands()],
    ids=lambda args: " ".join(args),
)
def test_command_line_options_exist(args):
    """Fails (not skips) while a command is still missing from the app."""
    result = run_cli([*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
