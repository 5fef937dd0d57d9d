"""The benchmark runner: kpictl against hand-written SQL lower bounds, same database, same run.

    python -m benchmarks                       # default scale, about 5 minutes on 2 cores
    python -m benchmarks --scale large         # the sizes of issue 6 (1,000,000 runs, ...)
    python -m benchmarks --only aggregate --repeat 5

Data comes from `kpictl.sample` (deterministic: same seed, same rows). Each scenario runs
`--repeat` times; the table reports medians. Results go to docs/PERFORMANCE.md (between the
markers) and to stdout. Nothing here is asserted: the test suite never times anything.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from kpictl import sample
from kpictl.db.engine import make_engine
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import periods, steps
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline.periods import Period
from kpictl.services.schema import migrate
from kpictl.settings import DatabaseTarget, Settings

ROOT = Path(__file__).resolve().parents[1]
BOUNDS = Path(__file__).resolve().parent / "bounds"
MARK_BEGIN = "<!-- benchmark results: begin -->"
MARK_END = "<!-- benchmark results: end -->"

# the parts of `--only scaling` (benchmarks/scaling.py), each also on its own
SCALING_PARTS = ["scaling-retention", "scaling-parallel", "scaling-next-cycle"]
SCALES = {
    # runs in the 7-day window; new runs for the next cycle; runs over 30 days (backfill);
    # tenants x 52 weekly reports x 20 audited pages (history fill); rows exported
    "small": {
        "runs": 100_000,
        "new_runs": 2_000,
        "backfill_runs": 100_000,
        "tenants": 1_000,
        "export_rows": 1_000_000,
    },
    "medium": {
        "runs": 300_000,
        "new_runs": 2_000,
        "backfill_runs": 300_000,
        "tenants": 3_000,
        "export_rows": 1_000_000,
    },
    "large": {
        "runs": 1_000_000,
        "new_runs": 2_000,
        "backfill_runs": 1_000_000,
        "tenants": 10_000,
        "export_rows": 1_000_000,
    },
}


@dataclass
class Row:
    scenario: str
    scale: str
    kpictl_s: float
    bound_s: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.kpictl_s / self.bound_s if self.bound_s else None


def median_time(
    action: Callable[[], object], repeat: int, before: Callable[[], object] | None = None
) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired_medians(
    first: Callable[[], object],
    second: Callable[[], object],
    repeat: int,
    before: Callable[[], object],
) -> tuple[float, float]:
    """Alternate the two actions (same state before each), so that background noise (a
    checkpoint, autovacuum) falls on both alike; medians of each."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for index, action in enumerate((first, second)):
            before()
            started = time.perf_counter()
            action()
            times[index].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


class Bench:
    def __init__(self, url: str, repeat: int):
        self.url = url
        self.repeat = repeat
        self.engine: Engine = make_engine(
            url, Settings(target=DatabaseTarget("bench", url), command="kpictl bench")
        )

    def sql(self, statement: str, **parameters) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), parameters)

    def run_script(self, name: str, parameters: dict) -> None:
        script = (BOUNDS / name).read_text()
        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            for statement in filter(str.strip, script.split(";\n")):
                body = "\n".join(
                    line for line in statement.splitlines() if not line.startswith("--")
                )
                if body.strip():
                    conn.execute(body, parameters)

    def run_sql(self, script: str, parameters: dict) -> None:
        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            for statement in filter(str.strip, script.split(";\n")):
                conn.execute(statement, parameters)

    def count(self, rows: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {rows}")).scalar_one())

    def checkpoint(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CHECKPOINT"))

    def vacuum(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))

    def aggregate(self, period: Period, **options: Any) -> pipeline.PipelineResult:
        """kpictl's aggregate cycle over `period` (PipelineOptions given by name)."""
        return pipeline.aggregate(
            self.engine,
            period,
            metadata={},
            options=steps.PipelineOptions(**options),
            stop=StopRequest(),
        )

    def backfill(self, buckets: list[Period], end: datetime, **options: Any) -> None:
        """kpictl's backfill of `buckets`, as of `end`."""
        pipeline.backfill(
            self.engine,
            buckets,
            force=False,
            metadata={},
            options=steps.PipelineOptions(**options),
            stop=StopRequest(),
            now=end,
        )


NEW_RUNS = """
INSERT INTO workflow_executions (id, repository_id, status, started_at, completed_at)
SELECT md5(%(tag)s || g)::uuid, (SELECT id FROM repositories ORDER BY id OFFSET g %% 40 LIMIT 1),
       CASE WHEN g %% 5 = 0 THEN 'failed' ELSE 'completed' END,
       c - (g %% 50 + 1) * interval '1 minute', c
FROM generate_series(1, %(count)s) g,
     LATERAL (SELECT %(since)s::timestamptz + (g %% 290) * interval '1 second' AS c) t;
INSERT INTO agent_runs (execution_id, prompt_tokens, completion_tokens, total_tokens)
SELECT md5(%(tag)s || g)::uuid, 100 + g %% 900, 50 + g %% 400, NULL FROM generate_series(1, %(count)s) g;
INSERT INTO mcp_tool_calls (execution_id, error)
SELECT md5(%(tag)s || g)::uuid, CASE WHEN g %% 9 = 0 THEN 'timeout' END FROM generate_series(1, %(count)s) g
"""


def load_runs(bench: Bench, *, seed: int, days: int, runs_per_day: int, now: datetime) -> None:
    """The sample factory's runs (50 repositories) ending at `now`; one tenant, no history."""
    with bench.engine.begin() as conn:
        sample.generate(
            conn,
            seed=seed,
            days=days,
            runs_per_day=runs_per_day,
            repositories=50,
            tenants=1,
            weeks=1,
            pages=1,
            now=now,
        )
    bench.vacuum()


def aggregate_scenarios(bench: Bench, scale: str) -> list[Row]:
    sizes = SCALES[scale]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    period = Period(end - timedelta(hours=168), end)
    load_runs(bench, seed=1, days=7, runs_per_day=sizes["runs"] // 7, now=end)

    def kpictl_aggregate() -> None:
        result = bench.aggregate(period)
        counts = result.periods[0]
        print(
            f"  from scratch: {counts.runs} runs, {counts.timings_ms} ms, total {result.duration_ms} ms",
            file=sys.stderr,
        )

    def truncate() -> None:
        bench.sql("TRUNCATE kpi_snapshots, kpi_aggregation_jobs")
        bench.checkpoint()

    parameters = {"start": period.start, "end": period.end, "since": period.start}
    scratch, scratch_bound = paired_medians(
        kpictl_aggregate,
        lambda: bench.run_script("aggregate.sql", parameters),
        bench.repeat,
        truncate,
    )
    rows = [
        Row(
            "aggregate --period-hours 168, from scratch",
            f"{sizes['runs']:,} runs",
            scratch,
            scratch_bound,
        )
    ]

    # Next cycles: the history is in place; every 5 minutes `new_runs` runs complete.
    truncate()
    kpictl_aggregate()
    incremental, bound = [], []
    for cycle in range(1, bench.repeat + 1):
        since = end + timedelta(minutes=5 * (cycle - 1))
        next_period = Period(
            period.start + timedelta(minutes=5 * cycle), end + timedelta(minutes=5 * cycle)
        )
        bench.run_sql(
            NEW_RUNS, {"tag": f"cycle{cycle}/", "count": sizes["new_runs"], "since": since}
        )
        # the bound first: the run level of the new runs, the window's product and factory
        # GROUP BYs; its rows are then removed, so that kpictl does the same work after it
        started = time.perf_counter()
        bench.run_script(
            "aggregate.sql", {"start": next_period.start, "end": next_period.end, "since": since}
        )
        bound.append(time.perf_counter() - started)
        bench.sql(
            "DELETE FROM kpi_snapshots WHERE period_end >= :since AND job_id IS NULL", since=since
        )
        started = time.perf_counter()
        result = bench.aggregate(next_period)
        incremental.append(time.perf_counter() - started)
        counts = result.periods[0]
        print(f"  next cycle {cycle}: {counts.runs} runs, {counts.timings_ms} ms", file=sys.stderr)
    rows.append(
        Row(
            "aggregate, next cycle (+new runs)",
            f"{sizes['new_runs']:,} new on {sizes['runs']:,}",
            statistics.median(incremental),
            statistics.median(bound),
            note=f"{100 * statistics.median(incremental) / scratch:.1f} % of from scratch",
        )
    )
    return rows


def reset_sources(bench: Bench) -> None:
    bench.sql(
        "TRUNCATE workflow_executions, agent_runs, mcp_tool_calls, verdict_outcomes, repositories, "
        "kpi_snapshots, kpi_aggregation_jobs"
    )


def backfill_scenario(bench: Bench, scale: str) -> list[Row]:
    sizes = SCALES[scale]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=30)
    reset_sources(bench)
    load_runs(bench, seed=3, days=30, runs_per_day=sizes["backfill_runs"] // 30, now=end)
    utc = periods.zone("UTC")
    buckets = periods.buckets(start, end, "day", utc, end)

    def kpictl_backfill() -> None:
        bench.backfill(buckets, end)

    def truncate() -> None:
        bench.sql("TRUNCATE kpi_snapshots, kpi_aggregation_jobs")
        bench.checkpoint()

    kpictl_s, bound_s = paired_medians(
        kpictl_backfill,
        lambda: bench.run_script("backfill.sql", {"start": start, "end": end}),
        bench.repeat,
        truncate,
    )
    return [
        Row("backfill 30 days, --bucket day", f"{sizes['backfill_runs']:,} runs", kpictl_s, bound_s)
    ]


def history_scenarios(bench: Bench, scale: str) -> list[Row]:
    from kpictl.services.history.fill import FillOptions, fill_with_job

    sizes = SCALES[scale]
    with bench.engine.begin() as conn:
        sample.generate(
            conn,
            seed=4,
            repositories=1,
            days=1,
            runs_per_day=1,
            tenants=sizes["tenants"],
            weeks=52,
            pages=20,
        )
    bench.vacuum()

    def clear() -> None:
        bench.sql("TRUNCATE kpi_history, kpi_aggregation_jobs")
        bench.checkpoint()

    fill_s, fill_bound = paired_medians(
        lambda: fill_with_job(bench.engine, FillOptions(), metadata={}),
        lambda: bench.run_script("history_fill.sql", {}),
        bench.repeat,
        clear,
    )
    rows = [
        Row(
            "history fill, all tenants",
            f"{sizes['tenants']:,} tenants x 52 weeks x 20 pages",
            fill_s,
            fill_bound,
        )
    ]
    return [*rows, export_scenario(bench, sizes["export_rows"])]


# 30 days of a 5-minute aggregate timer (`--period-hours 24`): per cycle every factory KPI and
# every product KPI of every product, and its job row; one job in 50 failed.
CYCLES_SQL = """
WITH cycles AS (
    SELECT date_trunc('minute', CAST(:end AS timestamptz)) - g * interval '5 minutes' AS period_end, g
    FROM generate_series(0, :cycles - 1) g
), kpis(level, kpi_name, unit) AS (
    VALUES ('factory', 'mtti', 'ms'), ('factory', 'success_rate', 'percent'),
           ('factory', 'factory_throughput', 'runs_per_day'),
           ('factory', 'steering_accuracy', 'percent'),
           ('product', 'product_success_rate', 'percent'),
           ('product', 'product_throughput', 'runs_per_day'),
           ('product', 'product_avg_duration', 'ms')
), scopes AS (
    SELECT 'factory' AS level, CAST(NULL AS uuid) AS scope_id
    UNION ALL SELECT 'product', id FROM repositories
)
INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end,
                           calculated_at)
SELECT k.kpi_name, k.level, s.scope_id, 50 + 40 * sin(c.g / 288.0 + length(k.kpi_name)),
       k.unit, c.period_end - interval '24 hours', c.period_end, c.period_end + interval '20 s'
FROM cycles c CROSS JOIN kpis k JOIN scopes s ON s.level = k.level
ON CONFLICT DO NOTHING
"""
CYCLE_JOBS_SQL = """
INSERT INTO kpi_aggregation_jobs (job_type, status, period_start, period_end, started_at,
                                  completed_at, duration_ms, snapshots_created, error)
SELECT 'aggregate', CASE WHEN g % 50 = 7 THEN 'failed' ELSE 'completed' END,
       t - interval '24 hours', t, t, t + interval '700 ms', 700, 40,
       CASE WHEN g % 50 = 7 THEN 'connection to server lost' END
FROM generate_series(0, :cycles - 1) g,
     LATERAL (SELECT date_trunc('minute', CAST(:end AS timestamptz)) - g * interval '5 minutes') AS c(t)
"""


def report_scenario(bench: Bench, scale: str) -> list[Row]:
    """`kpictl report` as a process, on the runs of the backfill scenario (their run-level
    snapshots and daily buckets) plus 30 days of 5-minute aggregate cycles and their jobs."""
    sizes = SCALES[scale]
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    cycles = 30 * 24 * 12
    if bench.count("workflow_executions") < sizes["backfill_runs"]:
        reset_sources(bench)
        load_runs(bench, seed=3, days=30, runs_per_day=sizes["backfill_runs"] // 30, now=end)
    bench.sql("TRUNCATE kpi_snapshots, kpi_aggregation_jobs")
    day = end.replace(hour=0, minute=0)
    bench.backfill(
        periods.buckets(day - timedelta(days=30), day, "day", periods.zone("UTC"), day), day
    )
    bench.sql(CYCLES_SQL, end=end, cycles=cycles)
    bench.sql(CYCLE_JOBS_SQL, end=end, cycles=cycles)
    bench.vacuum()
    snapshots = bench.count("kpi_snapshots")
    target = Path(tempfile.mkdtemp(prefix="kpictl-report-")) / "kpis.html"
    command = [sys.executable, "-m", "kpictl", "report", "--output", str(target), "-q"]
    environment = {**os.environ, "KPICTL_DATABASE_URL": bench.url}
    kpictl_s = median_time(
        lambda: subprocess.run(command, env=environment, check=True), bench.repeat
    )
    size = target.stat().st_size // 1024
    return [
        Row(
            "report --days 30 (HTML, process start included)",
            f"{sizes['backfill_runs']:,} runs, {snapshots:,} snapshots",
            kpictl_s,
            None,
            note=f"{cycles:,} cycles of 24 h windows in range; page {size} kB",
        )
    ]


def export_scenario(bench: Bench, count: int) -> Row:
    tenant = "00000000-0000-4000-8000-00000000e890"
    bench.sql(
        "INSERT INTO tenants (id, slug, name) VALUES (CAST(:id AS uuid), 'bench-export', 'Bench') "
        "ON CONFLICT DO NOTHING",
        id=tenant,
    )
    bench.sql(
        """
INSERT INTO kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
                         vli_integrity_pct, hrp_pct)
SELECT CAST(:id AS uuid), DATE '0001-01-01' + g, (g % 10000) / 100.0, (g % 9000) / 100.0,
       (g % 8000) / 100.0, (g % 70000) / 100.0, (g % 9999) / 100.0,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 5000) / 100.0 END
FROM generate_series(0, :count - 1) g
ON CONFLICT DO NOTHING
""",
        id=tenant,
        count=count,
    )
    bench.vacuum()
    target = Path(tempfile.mkdtemp(prefix="kpictl-export-")) / "export.csv"
    environment = {**os.environ, "KPICTL_DATABASE_URL": bench.url}
    command = [sys.executable, "-m", "kpictl", "history", "export", "--tenant", "bench-export"]
    command += ["--all", "--format", "csv", "--output", str(target), "-q"]
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    peaks: list[int] = []

    def kpictl_export() -> None:
        done = subprocess.run(
            [sys.executable, "-c", measure, *command],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(done.stdout.strip()) // 1024)

    # The bound runs in a process of its own too (interpreter, driver, COPY to the file), so
    # that both sides pay for starting a client.
    copy_script = (
        "import sys, psycopg\n"
        "with psycopg.connect(sys.argv[1]) as conn, conn.cursor() as cursor, "
        "open(sys.argv[2], 'wb') as out:\n"
        "    with cursor.copy('COPY (SELECT as_of, aiv_pct, ati_pct, crs_pct, "
        "elasticity_usd_per_point, vli_integrity_pct, hrp_pct FROM kpi_history "
        "WHERE tenant_id = ' + repr(sys.argv[3]) + ' ORDER BY as_of) TO STDOUT WITH (FORMAT csv, HEADER)') as copy:\n"
        "        for block in copy:\n"
        "            out.write(block)\n"
    )
    libpq_url = bench.url.replace("postgresql+psycopg://", "postgresql://", 1)

    def bound_export() -> None:
        subprocess.run(
            [sys.executable, "-c", copy_script, libpq_url, str(target), tenant], check=True
        )

    kpictl_s, bound_s = paired_medians(kpictl_export, bound_export, bench.repeat, lambda: None)
    return Row(
        "history export --all, CSV",
        f"{count:,} rows",
        kpictl_s,
        bound_s,
        note=f"peak RSS {max(peaks)} MB (process start included)",
    )


def cli_scenarios(repeat: int) -> list[Row]:
    python = sys.executable

    def run(*args: str, env: dict | None = None) -> None:
        subprocess.run(args, check=False, capture_output=True, env={**os.environ, **(env or {})})

    bare = median_time(lambda: run(python, "-c", "pass"), max(repeat, 5))
    help_time = median_time(lambda: run(python, "-m", "kpictl", "--help"), max(repeat, 5))
    completion = median_time(
        lambda: run(
            python,
            "-m",
            "kpictl",
            env={"_KPICTL_COMPLETE": "complete_bash", "COMP_WORDS": "kpictl ag", "COMP_CWORD": "1"},
        ),
        max(repeat, 5),
    )
    return [
        Row(
            "kpictl --help",
            "-",
            help_time,
            bare,
            note=f"{1000 * (help_time - bare):.0f} ms above the interpreter",
        ),
        Row(
            "shell completion request",
            "-",
            completion,
            bare,
            note=f"{1000 * (completion - bare):.0f} ms above the interpreter",
        ),
    ]


def render(rows: list[Row], server_version: str) -> str:
    lines = [
        MARK_BEGIN,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {server_version}. Medians.",
        "",
        "| scenario | scale | kpictl (s) | lower bound (s) | ratio | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio else "-"
        bound = f"{row.bound_s:.3f}" if row.bound_s is not None else "-"
        lines.append(
            f"| {row.scenario} | {row.scale} | {row.kpictl_s:.3f} | {bound} | {ratio} | {row.note} |"
        )
    lines += ["", MARK_END]
    return "\n".join(lines)


def write_results(block: str, path: Path) -> None:
    text_before = (
        path.read_text()
        if path.exists()
        else "# Performance\n\n" + MARK_BEGIN + "\n" + MARK_END + "\n"
    )
    if MARK_BEGIN in text_before:
        head, _, rest = text_before.partition(MARK_BEGIN)
        _, _, tail = rest.partition(MARK_END)
        path.write_text(head + block + tail)
    else:
        path.write_text(text_before.rstrip() + "\n\n" + block + "\n")


def database_url(data_dir: Path) -> str:
    given = os.environ.get("KPICTL_BENCH_DATABASE_URL")
    if given:
        return given.replace("postgresql://", "postgresql+psycopg://", 1)
    from kpictl.db.embedded import start_embedded

    server = start_embedded(data_dir, "kpictl_bench", keep_running=False)
    admin = psycopg.connect(server.admin_url.replace("+psycopg", ""), autocommit=True)
    admin.execute("DROP DATABASE IF EXISTS kpictl_bench WITH (FORCE)")
    admin.execute("CREATE DATABASE kpictl_bench")
    admin.close()
    return server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["aggregate", "backfill", "history", "report", "cli", "scaling", *SCALING_PARTS],
        action="append",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument(
        "--retention-scale", choices=sorted(SCALES), help="the scaling retention scenario's scale"
    )
    args = parser.parse_args(argv)
    # the embedded server stops when this process exits, after the directory is removed: its
    # last WAL writes may race the removal (the results are written before it)
    with tempfile.TemporaryDirectory(
        prefix="kpictl-bench-", ignore_cleanup_errors=True
    ) as data_dir:
        url = database_url(Path(data_dir))
        bench = Bench(url, args.repeat)
        migrate.upgrade(bench.engine, with_sources=True)
        with bench.engine.connect() as conn:
            server_version = conn.execute(
                text("SELECT 'PostgreSQL ' || current_setting('server_version')")
            ).scalar_one()
        rows: list[Row] = []
        wanted = set(args.only or ["aggregate", "backfill", "history", "report", "cli"])
        if "aggregate" in wanted:
            rows += aggregate_scenarios(bench, args.scale)
        if "backfill" in wanted:
            rows += backfill_scenario(bench, args.scale)
        if "report" in wanted:
            rows += report_scenario(bench, args.scale)
        if "history" in wanted:
            rows += history_scenarios(bench, args.scale)
        if "cli" in wanted:
            rows += cli_scenarios(args.repeat)
        parts = [part for part in SCALING_PARTS if {"scaling", part} & set(args.only or [])]
        if parts:  # long: only when asked for
            from benchmarks import scaling

            rows += scaling.scenarios(bench, args.scale, args.retention_scale, parts)
        bench.engine.dispose()
        block = render(rows, server_version)
        print(block)
        write_results(block, args.output)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"runner peak RSS {peak} MB", file=sys.stderr)
    return 0
