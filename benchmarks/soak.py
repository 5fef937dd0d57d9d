"""A reproducible soak under faults: several hosts fire every locking job while chaos strikes.

    python -m benchmarks.soak --seconds 600 --hosts 3 --seed 7      # the full run (docs/RELIABILITY.md)
    python -m benchmarks.soak --seconds 60                          # what CI runs (tests/repo/test_soak.py)

What it does, on a private PostgreSQL 15 cluster (Debian's binaries, `.ci/pg15`) that it may
restart at will:

1. A database with kpictl's tables and a small sample factory (`kpictl.sample`).
2. `--hosts` simulated hosts, each a process tree in its own UTS namespace (`unshare --uts`, so
   `socket.gethostname()` differs, as on real hosts; the same hostname when not root) running
   four timer loops at compressed intervals: `aggregate`, `backfill` (the last two days),
   `history fill` and `retention`, each a real `kpictl` process. A platform writer inserts
   completed runs all along.
3. A chaos loop, seeded: SIGKILL and SIGTERM of running kpictl processes, `pg_terminate_backend`
   of kpictl's backends (lock connections included), a short `idle_session_timeout` on the
   database for a while, and `pg_ctl restart -m fast` of the server.
4. Then the faults stop, every kind of job runs once more cleanly, and the checks:
   - 0 duplicate snapshot keys; 0 jobs left `running`;
   - no two `completed` jobs of one lock (pipeline, retention, history fill) overlap in time;
   - no invocation printed a traceback or an "internal error";
   - every hour bucket of the soak has its product and factory KPIs, and every snapshot equals
     the one a clean recomputation writes on a copy of the same sources (run level included).

The result (cycles by command and exit code, faults by kind, recoveries) is printed as JSON; the
process exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG15 = ROOT / ".ci" / "pg15"
PG15_BIN = Path(os.environ.get("KPICTL_PG15_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "soak"

# (command, seconds between two runs on one host): compressed timer schedules
TIMERS = (
    (["aggregate", "--period-hours", "6", "--align", "1m"], 1.0),
    (["backfill", "--since", "{since}", "--bucket", "hour"], 4.0),
    (["history", "fill"], 3.0),
    (["retention"], 5.0),
)
LOCK_OF = {
    "aggregate": "pipeline",
    "backfill": "pipeline",
    "history_fill": "history fill",
    "retention": "retention",
}
FAULTS = ("sigkill", "sigterm", "terminate_backend", "idle_timeout", "restart")


def available() -> str | None:
    """Why the soak cannot run here, or None."""
    if not (PG15_BIN / "initdb").exists():
        return f"no PostgreSQL 15 binaries in {PG15_BIN}"
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    return None


# --- the server -------------------------------------------------------------------------------


class Cluster:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)
        url = subprocess.run(
            [str(PG15), str(directory)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.admin_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.url = self.admin_url.replace("/postgres?", f"/{DATABASE}?", 1)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def restart(self) -> None:
        command = [str(PG15_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast"]
        command += ["-w", "-l", str(self.directory / "server.log"), "restart"]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        subprocess.run([str(PG15), "stop", str(self.directory)], check=False)


def kpictl(args: list[str], url: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "KPICTL_DATABASE_URL": url, "KPICTL_STOP_GRACE_SECONDS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kpictl", *args], env=env, capture_output=True, text=True, **kwargs
    )


def prepare(cluster: Cluster, seed: int) -> None:
    with cluster.admin() as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    result = kpictl(["migrate", "--with-sources"], cluster.url)
    if result.returncode != 0:
        raise SystemExit(f"migrate failed: {result.stderr}")
    from sqlalchemy import create_engine

    from kpictl import sample

    engine = create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        sample.generate(conn, seed=seed, days=3, runs_per_day=400, tenants=6, weeks=4)
    engine.dispose()


# --- hosts: timer loops of real kpictl processes ---------------------------------------------


def host_main(name: str, url: str, until: float, log_path: str, pids: str, seed: int) -> None:
    """One simulated host: a thread-free loop per timer, each in a child process."""
    rng = random.Random(f"{seed}/{name}")
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:00")
    next_at = [time.monotonic() + rng.uniform(0, interval) for _, interval in TIMERS]
    running: dict[int, tuple[subprocess.Popen, list[str], float]] = {}
    with open(log_path, "a") as log:
        while time.monotonic() < until or running:
            now = time.monotonic()
            for index, (command, interval) in enumerate(TIMERS):
                busy = any(entry[1] is command for entry in running.values())
                if now < until and now >= next_at[index] and not busy:
                    args = [part.format(since=since) for part in command]
                    process = subprocess.Popen(
                        [sys.executable, "-m", "kpictl", *args, "-q"],
                        env={
                            **os.environ,
                            "KPICTL_DATABASE_URL": url,
                            "KPICTL_STOP_GRACE_SECONDS": "2",
                            # pipeline steps that last long enough for faults to land mid-run
                            "KPICTL_DEBUG_STEP_SLEEP": "run:0.3,product:0.5,factory:0.3",
                        },
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    Path(pids, str(process.pid)).touch()
                    running[process.pid] = (process, command, time.time())
                    next_at[index] = now + interval * rng.uniform(0.7, 1.3)
            for pid, (process, command, started) in list(running.items()):
                if process.poll() is None:
                    continue
                stderr = process.stderr.read() if process.stderr else ""
                Path(pids, str(pid)).unlink(missing_ok=True)
                del running[pid]
                entry = {
                    "host": name,
                    "command": command[0] if command[0] != "history" else "history fill",
                    "exit": process.returncode,
                    "started": started,
                    "ended": time.time(),
                    "bug": "internal error" in stderr or "Traceback" in stderr,
                    "stderr": stderr[-400:] if process.returncode not in (0, 75) else "",
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
            time.sleep(0.05)


def start_host(name: str, url: str, until: float, workdir: Path, seed: int) -> subprocess.Popen:
    call = (
        "import sys; from benchmarks.soak import host_main; "
        f"host_main({name!r}, {url!r}, {until!r}, {str(workdir / 'runs.jsonl')!r}, "
        f"{str(workdir / 'pids')!r}, {seed})"
    )
    python = [sys.executable, "-c", call]
    if os.geteuid() == 0:
        python = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *python]
    return subprocess.Popen(python, cwd=ROOT)


def platform_writer(url: str, until: float) -> None:
    """Completed runs arrive all along, as the platform records them."""
    while time.monotonic() < until:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                while time.monotonic() < until:
                    conn.execute(
                        "INSERT INTO workflow_executions (repository_id, status, started_at, "
                        "completed_at) SELECT id, 'completed', now() - interval '3 minutes', "
                        "now() FROM repositories ORDER BY random() LIMIT 1"
                    )
                    time.sleep(0.2)
        except psycopg.Error:
            time.sleep(0.5)


# --- chaos ------------------------------------------------------------------------------------


def chaos(cluster: Cluster, workdir: Path, until: float, rng: random.Random) -> Counter:
    injected: Counter = Counter()
    idle_until = 0.0
    while time.monotonic() < until:
        time.sleep(rng.uniform(0.5, 2.0))
        if idle_until and time.monotonic() > idle_until:
            _sql(cluster, f"ALTER DATABASE {DATABASE} RESET idle_session_timeout")
            idle_until = 0.0
        fault = rng.choices(FAULTS, weights=(4, 4, 4, 1, 1))[0]
        if fault in ("sigkill", "sigterm"):
            pids = [int(path.name) for path in (workdir / "pids").iterdir()]
            if not pids:
                continue
            try:
                os.kill(rng.choice(pids), signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)
            except ProcessLookupError:
                continue
        elif fault == "terminate_backend":
            _sql(
                cluster,
                "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE application_name LIKE 'kpictl%' ORDER BY random() LIMIT 1) one",
            )
        elif fault == "idle_timeout":
            _sql(cluster, f"ALTER DATABASE {DATABASE} SET idle_session_timeout = '1s'")
            idle_until = time.monotonic() + rng.uniform(3, 8)
        elif fault == "restart":
            cluster.restart()
        injected[fault] += 1
    _sql(cluster, f"ALTER DATABASE {DATABASE} RESET idle_session_timeout")
    return injected


def _sql(cluster: Cluster, statement: str) -> None:
    try:
        with cluster.admin() as conn:
            conn.execute(statement)
    except psycopg.Error:
        pass


# --- the end: clean cycles and checks ----------------------------------------------------------


def settle(cluster: Cluster, since: str, until: str) -> dict[str, int]:
    """Run every kind of job once cleanly (retrying what a just-ended fault still blocks)."""
    attempts: Counter = Counter()
    for args in (
        ["aggregate", "--period-hours", "6", "--align", "1m", "--wait", "60"],
        ["backfill", "--since", since, "--until", until, "--bucket", "hour", "--wait", "60"],
        ["history", "fill"],
        ["retention"],
    ):
        for _ in range(5):
            attempts[args[0]] += 1
            result = kpictl(args, cluster.url, timeout=300)
            if result.returncode == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"{' '.join(args)} never succeeded after the faults: {result.stderr}")
    return dict(attempts)


SNAPSHOTS = """
SELECT level, kpi_name, kpi_version, scope_id, period_start, period_end, value
FROM kpi_snapshots
WHERE period_start >= %(since)s AND period_end <= %(until)s
  AND (level = 'run' OR period_end - period_start = interval '1 hour')
ORDER BY 1, 2, 3, 4, 5, 6
"""


def check(cluster: Cluster, runs: list[dict], since: str, until: str) -> dict[str, object]:
    failures: list[str] = []
    with psycopg.connect(cluster.url) as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM kpi_snapshots GROUP BY level, kpi_name, "
            "kpi_version, scope_id, period_start, period_end HAVING count(*) > 1) d"
        ).fetchone()[0]
        running = conn.execute(
            "SELECT count(*) FROM kpi_aggregation_jobs WHERE status = 'running'"
        ).fetchone()[0]
        jobs = conn.execute(
            "SELECT job_type, started_at, completed_at FROM kpi_aggregation_jobs "
            "WHERE status = 'completed' AND job_type = ANY(%s) ORDER BY started_at",
            (list(LOCK_OF),),
        ).fetchall()
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM kpi_aggregation_jobs GROUP BY status"
            ).fetchall()
        )
        hours = conn.execute(
            "SELECT count(DISTINCT period_start) FROM kpi_snapshots WHERE level = 'factory' "
            "AND period_end - period_start = interval '1 hour' AND period_start >= %s "
            "AND period_end <= %s",
            (since, until),
        ).fetchone()[0]
    overlaps = 0
    last_end: dict[str, datetime] = {}
    for job_type, started, completed in jobs:
        lock = LOCK_OF[job_type]
        if lock in last_end and started < last_end[lock]:
            overlaps += 1
        last_end[lock] = max(last_end.get(lock, completed), completed)
    expected_hours = int(
        (datetime.fromisoformat(until) - datetime.fromisoformat(since)).total_seconds() // 3600
    )
    soaked = _snapshots(cluster.url, since, until)
    clean = _recompute(cluster, since, until)
    mismatched = len(set(soaked) ^ set(clean))
    bugs = sum(1 for run in runs if run["bug"])
    for name, value, ok in (
        ("duplicate keys", duplicates, duplicates == 0),
        ("jobs left running", running, running == 0),
        ("overlapping completed jobs of one lock", overlaps, overlaps == 0),
        ("invocations with a traceback or internal error", bugs, bugs == 0),
        ("hour buckets with factory KPIs", f"{hours}/{expected_hours}", hours == expected_hours),
        ("snapshots differing from a clean recomputation", mismatched, mismatched == 0),
    ):
        if not ok:
            failures.append(f"{name}: {value}")
    return {
        "duplicate_keys": duplicates,
        "jobs_running": running,
        "job_statuses": statuses,
        "overlapping_completed_jobs": overlaps,
        "bug_reports": bugs,
        "hour_buckets": f"{hours}/{expected_hours}",
        "snapshots_compared": len(clean),
        "snapshots_differing": mismatched,
        "failures": failures,
    }


def _snapshots(url: str, since: str, until: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(SNAPSHOTS, {"since": since, "until": until})]


def _recompute(cluster: Cluster, since: str, until: str) -> list[tuple]:
    """The same buckets computed on a copy of the same sources with no kpictl state at all."""
    with cluster.admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()",
            (DATABASE,),
        )
        conn.execute(f"CREATE DATABASE {DATABASE}_clean TEMPLATE {DATABASE}")
    clean_url = cluster.url.replace(f"/{DATABASE}?", f"/{DATABASE}_clean?", 1)
    with psycopg.connect(clean_url, autocommit=True) as conn:
        conn.execute("TRUNCATE kpi_snapshots, kpi_hourly_runs, kpi_hourly_totals")
        conn.execute("DELETE FROM kpi_aggregation_jobs")
    result = kpictl(
        ["backfill", "--since", since, "--until", until, "--bucket", "hour"], clean_url, timeout=300
    )
    if result.returncode != 0:
        raise SystemExit(f"clean recomputation failed: {result.stderr}")
    return _snapshots(clean_url, since, until)


# --- the whole run ------------------------------------------------------------------------------


def soak(seconds: float, hosts: int, seed: int, workdir: Path) -> dict[str, object]:
    rng = random.Random(seed)
    cluster = Cluster(workdir / "pg")
    try:
        prepare(cluster, seed)
        (workdir / "pids").mkdir()
        start = datetime.now(UTC)
        since = (start - timedelta(days=2)).strftime("%Y-%m-%dT%H:00")
        until_at = time.monotonic() + seconds
        processes = [
            start_host(f"soak-host-{number}", cluster.url, until_at, workdir, seed)
            for number in range(1, hosts + 1)
        ]
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from benchmarks.soak import platform_writer; "
                f"platform_writer({cluster.url!r}, {until_at!r})",
            ],
            cwd=ROOT,
        )
        injected = chaos(cluster, workdir, until_at, rng)
        for process in [*processes, writer]:
            process.wait(timeout=600)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        until = end.strftime("%Y-%m-%dT%H:00")
        settle_attempts = settle(cluster, since, until)
        runs = [json.loads(line) for line in (workdir / "runs.jsonl").read_text().splitlines()]
        results = check(cluster, runs, since, until)
        cycles = Counter(f"{run['command']} -> {run['exit']}" for run in runs)
        recoveries = sum(
            1
            for index, run in enumerate(runs)
            if run["exit"] not in (0, 75)
            and any(
                later["command"] == run["command"] and later["exit"] == 0
                for later in runs[index + 1 :]
            )
        )
        return {
            "seconds": seconds,
            "hosts": sorted({run["host"] for run in runs}),
            "server": "PostgreSQL 15",
            "invocations": len(runs),
            "cycles": dict(sorted(cycles.items())),
            "faults": dict(injected),
            "recoveries": recoveries,
            "settle_attempts": settle_attempts,
            "unexpected_stderr": [run["stderr"] for run in runs if run["bug"]][:5],
            # what the operator saw on the failures (exit 1 and 69), one line each
            "failure_messages": sorted(
                {
                    line
                    for run in runs
                    if run["exit"] in (1, 69)
                    for line in run["stderr"].splitlines()
                    if line.startswith("kpictl: error")
                }
            )[:12],
            **results,
        }
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    reason = available()
    if reason:
        print(f"soak not run: {reason}", file=sys.stderr)
        return 3
    workdir = Path(tempfile.mkdtemp(prefix="kpictl-soak-"))
    workdir.chmod(0o755)
    try:
        report = soak(args.seconds, args.hosts, args.seed, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
