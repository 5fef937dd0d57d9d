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
UNIT_JOBS = (*JOBS, "prometheus", "report")  # metrics for node_exporter; the HTML report
TEXTFILE = "/var/lib/prometheus/node-exporter/kpictl.prom"
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
    for job in UNIT_JOBS:
        for line in exec_starts(UNITS / f"kpictl-{job}.service"):
            assert line.startswith(f"{KPICTL_BIN} "), line
            commands.append(kpictl_args(line))
    return commands


def cron_commands() -> list[list[str]]:
    return [kpictl_args(command) for _, command in cron_entries()]


def test_every_job_has_a_service_and_a_timer():
    names = sorted(path.name for path in UNITS.iterdir())
    expected = [f"kpictl-{job}.{kind}" for job in UNIT_JOBS for kind in ("service", "timer")]
    assert names == sorted([*expected, "kpictl-alert@.service"])


@pytest.mark.parametrize("job", UNIT_JOBS)
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
    # one command per unit; the metrics unit writes its two textfiles one after the other
    assert len(exec_starts(UNITS / f"kpictl-{job}.service")) == (2 if job == "prometheus" else 1)


@pytest.mark.parametrize(
    ("job", "calendar"),
    [
        ("aggregate", "*:0/5"),
        ("history-fill", "*-*-* 04:00:00 UTC"),
        ("retention", "*-*-* 03:30:00 UTC"),
        ("freshness", "*:2/5"),
        ("report", "*:4/15"),
    ],
)
def test_timer_settings(job, calendar):
    unit = read_unit(UNITS / f"kpictl-{job}.timer")
    assert unit["Timer"]["OnCalendar"] == calendar
    # a missed freshness slot is not run at boot: it would alert before the aggregate caught up
    # nor is a missed report (the next comes within 15 minutes)
    assert unit["Timer"]["Persistent"] == ("false" if job in ("freshness", "report") else "true")
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
        name = " ".join(args[:2]) if args[0] == "history" else args[0]
        schedules["prometheus" if "prometheus" in args else name] = (schedule, command)
    assert {name: schedule for name, (schedule, _) in schedules.items()} == {
        "aggregate": "*/5 * * * *",
        "history fill": "0 4 * * *",
        "retention": "30 3 * * *",
        "freshness": "2-59/5 * * * *",
        "prometheus": "* * * * *",
        "report": "4-59/15 * * * *",
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


def test_freshness_waits_after_boot_without_failing():
    """No alert on boot before the first aggregate could run: the check is skipped (a failed
    ExecCondition= skips, it does not fail the unit) during the first 10 minutes of uptime."""
    service = read_unit(UNITS / "kpictl-freshness.service")
    condition = service["Service"]["ExecCondition"]
    assert "/proc/uptime" in condition and "600" in condition
    script = condition.split(" -c ", 1)[1].strip("'")
    for uptime, code in (("59.2 100.0", 1), ("600.0 1.0", 0), ("86400.55 2.0", 0)):
        fake = subprocess.run(
            ["/bin/sh", "-c", script.replace("/proc/uptime", "/dev/stdin")],
            input=uptime + "\n",
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert fake.returncode == code, (uptime, fake.stderr)


def test_prometheus_textfile_unit():
    service = read_unit(UNITS / "kpictl-prometheus.service")["Service"]
    freshness, kpis = exec_starts(UNITS / "kpictl-prometheus.service")
    assert kpictl_args(freshness) == [
        "freshness",
        "--format",
        "prometheus",
        "--output",
        TEXTFILE,
        "-q",
    ]
    kpis_file = str(Path(TEXTFILE).parent / "kpictl_kpis.prom")
    assert kpictl_args(kpis) == ["kpis", "--format", "prometheus", "--output", kpis_file, "-q"]
    # stale or missing KPIs are the metrics' news, not the unit's failure; 3 (could not check)
    # still fails it
    assert service["SuccessExitStatus"].split() == ["1", "2"]
    assert service["ReadWritePaths"] == str(Path(TEXTFILE).parent)
    assert service["UMask"] == "0022"  # node_exporter, another user, reads the file
    timer = read_unit(UNITS / "kpictl-prometheus.timer")["Timer"]
    assert timer["OnCalendar"] == "*:*:00" and timer["Persistent"] == "false"


def kubernetes_cronjob() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "kubernetes" / "cronjob.yaml").read_text(encoding="utf-8"))


def test_kubernetes_cronjob_never_overlaps_and_reads_the_url_from_a_secret():
    cronjob = kubernetes_cronjob()
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == "*/5 * * * *"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 90  # kpictl's 60 s stop grace, plus margin
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["KPICTL_DATABASE_URL_FILE"].startswith(container["volumeMounts"][0]["mountPath"])
    assert not any(
        name == "DATABASE_URL" or "postgresql://" in value for name, value in env.items()
    )
    assert pod["volumes"][0]["secret"]["secretName"] == "kpictl-database-url"
    assert kpictl_args(container["args"][0]) == ["aggregate", "--period-hours", "24", "-q"]


@pytest.mark.parametrize(("exit_code", "reported"), [(0, 0), (75, 0), (1, 1), (69, 69), (2, 2)])
def test_kubernetes_cronjob_counts_a_busy_lock_as_success(tmp_path, exit_code, reported):
    """The container's shell line, run with a stand-in kpictl that exits with `exit_code`."""
    container = kubernetes_cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"] == ["/bin/sh", "-c"]
    fake = tmp_path / "kpictl"
    fake.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    fake.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", container["args"][0]],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        timeout=10,
    )
    assert result.returncode == reported


CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def test_containerfile_installs_the_wheel_and_runs_as_a_numeric_non_root_user():
    lines = [
        line.strip()
        for line in CONTAINERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.")
    assert "COPY kpictl-*.whl /tmp/" in lines
    assert any("pip install" in line and "/tmp/kpictl-*.whl" in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["10001"]
    assert 'ENTRYPOINT ["kpictl"]' in lines


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    return info.returncode == 0


@pytest.mark.slow
def test_the_container_image_builds_and_runs(tmp_path):
    """Only where a container builder runs (CI on this image has the client, no engine)."""
    if not docker_engine():
        pytest.skip("no Docker engine here: the image is built where one exists")
    root = DEPLOY.parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    tag = "kpictl-test:latest"
    subprocess.run(
        ["docker", "build", "-f", str(CONTAINERFILE), "-t", tag, str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    result = subprocess.run(
        ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "kpictl" in result.stdout
    # no URL, no terminal: a deployment mistake, exit 2, no embedded server
    result = subprocess.run(
        ["docker", "run", "--rm", tag, "kpis"], capture_output=True, timeout=120
    )
    assert result.returncode == 2
