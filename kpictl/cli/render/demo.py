"""`kpictl demo` output: what the demo did, and where to go next (the KPI and freshness tables
are those of `kpictl kpis` and `kpictl freshness`)."""

from __future__ import annotations

from kpictl.services.maintenance.demo import DemoResult

NEXT_STEPS = """
Next:
  kpictl kpis --level product              per-product KPIs
  kpictl freshness --format prometheus     monitoring output
  kpictl jobs                              what ran, how long, how many snapshots
  kpictl history export --tenant acme      a tenant's weekly KPI history (CSV)
  docs/OPERATIONS.md, docs/deploy/         production setup and timers
  kpictl demo --stop                       stop the embedded server (it keeps running)

See the trends: kpictl report --output kpis.html, then open kpis.html in a browser."""


def summary_lines(result: DemoResult) -> list[str]:
    """The sample loaded (or not), then the pipeline and history steps, and a blank line."""
    loaded = result.sample_rows_loaded
    return [
        f"Sample: {loaded} rows loaded"
        if loaded
        else "Sample: already loaded (use --reset to start over)",
        f"Aggregated the last week ({result.aggregate_snapshots} snapshots); backfilled "
        f"{result.backfill_buckets} daily buckets ({result.backfill_skipped} already done); "
        f"filled {result.history_rows} weeks of KPI history for {result.history_filled} tenants.\n",
    ]


def stopped_line(stopped: bool, pgdata: object) -> str:
    """What `kpictl demo --stop` did."""
    if stopped:
        return f"Stopped the embedded server (data kept in {pgdata})."
    return f"The embedded server is not running ({pgdata})."
