"""Sizes on disk per million runs (docs/SCALING.md): the benchmark's sample of `--runs` runs
over 30 days, backfilled in daily buckets into the partitioned kpi_snapshots, then measured.

    python -m benchmarks.sizes                  # 1,000,000 runs, a few minutes on 2 cores
    python -m benchmarks.sizes --runs 100000

Prints a table; nothing is asserted and nothing is written into the docs.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from benchmarks.run import Bench, database_url, load_runs
from kpictl.services.pipeline import periods
from kpictl.services.schema import migrate

MEASURES = {
    "runs": "SELECT count(*) FROM workflow_executions",
    "run snapshots": "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'",
    "product and factory snapshots": "SELECT count(*) FROM kpi_snapshots WHERE level <> 'run'",
    "run partitions, heap (bytes)": "SELECT sum(pg_relation_size(oid)) FROM pg_class "
    "WHERE relname LIKE 'kpi_snapshots_run_%' AND relkind = 'r'",
    "run partitions, with indexes (bytes)": "SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
    "WHERE relname LIKE 'kpi_snapshots_run_%' AND relkind = 'r'",
    "product and factory partitions (bytes)": "SELECT sum(pg_total_relation_size(oid)) "
    "FROM pg_class WHERE relkind = 'r' AND (relname LIKE 'kpi_snapshots_product_%' "
    "OR relname LIKE 'kpi_snapshots_factory_%')",
    "sources: executions, agent runs, tool calls (bytes)": "SELECT "
    "pg_total_relation_size('workflow_executions') + pg_total_relation_size('agent_runs') "
    "+ pg_total_relation_size('mcp_tool_calls')",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sizes")
    parser.add_argument("--runs", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpictl-sizes-") as data_dir:
        bench = Bench(database_url(Path(data_dir)), 1)
        migrate.upgrade(bench.engine, with_sources=True)
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        load_runs(bench, seed=3, days=30, runs_per_day=args.runs // 30, now=end)
        buckets = periods.buckets(end - timedelta(days=30), end, "day", periods.zone("UTC"), end)
        bench.backfill(buckets, end)
        bench.vacuum()
        with bench.engine.connect() as connection:
            for name, query in MEASURES.items():
                print(f"{name:55} {connection.execute(text(query)).scalar_one():>15,}")
        bench.engine.dispose()


if __name__ == "__main__":
    main()
