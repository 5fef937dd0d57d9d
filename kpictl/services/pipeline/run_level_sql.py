"""The run level's SQL (docs/spec/pipeline.md §3): which runs a cycle snapshots, the keyset
chunk that writes run_duration, token_usage and tool_call_success_rate for them, and the
checks around it (done runs, other writers, the pending count). The statements of the other
levels and the source clock are `kpi_sql.py`; the KPI rules `kpictl/db/kpi_rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from kpictl.db import kpi_rules as rules
from kpictl.services.pipeline.kpi_sql import (
    IN_PERIOD,
    TERMINAL,
    UPSERT,
    SourceClock,
    clocked_sql,
)

# Has kpictl snapshotted this run? (run_duration written by a kpictl job; the AFU-9 platform's
# trigger also writes run_duration rows, without a job_id, and those runs still need the other
# run-level KPIs.) A scalar sub-select runs as one index probe per candidate run, whatever the
# often stale statistics of kpi_snapshots say; a NOT EXISTS anti-join planned on a fresh
# table's "1 row" estimate degenerates into a nested loop over every snapshot.
# The probe names the key's leading columns down to period_end (the run's completed_at): a
# chunk's runs come in completed_at order, so its probes read the key index in order too.
RUN_DONE = """(SELECT 1 FROM kpi_snapshots k
        WHERE k.level = 'run' AND k.kpi_name = :run_duration AND k.kpi_version = :version
          AND k.period_end = {completed} AND k.scope_id = e.id AND k.job_id IS NOT NULL
        LIMIT 1) IS NOT NULL"""

# Has a kpictl job snapshotted a run that completed in the scan range [scan_from, period_end)?
# When none has, no candidate of the range is done, and none becomes done while this job runs
# but through its own chunks (one pipeline at a time; a chunk never takes a run that an earlier
# chunk took): the chunks leave out the per-run RUN_DONE probe, the largest cost of a
# from-scratch cycle or a backfill bucket after the writes. Zone-less completed_at values are
# compared by wall clock, and near a DST change a run's instant may fall up to `:margin` outside
# the range that selects it: the range is widened by that much (only for them).
KPICTL_RUN_SNAPSHOTS_IN_SCAN = """
SELECT EXISTS (SELECT 1 FROM kpi_snapshots k
               WHERE k.level = 'run' AND k.kpi_name = :run_duration AND k.kpi_version = :version
                 AND k.period_end >= CAST(:scan_from AS timestamptz) - CAST(:margin AS interval)
                 AND k.period_end < CAST(:period_end AS timestamptz) + CAST(:margin AS interval)
                 AND k.job_id IS NOT NULL)
"""


def kpictl_run_snapshots_in_scan(clock: SourceClock) -> TextClause:
    """The statement above with its `margin` bound: 3 hours for zone-less completed_at (more
    than any zone's DST shift), none for timestamptz."""
    margin = "3 hours" if clock.completed_zoneless else "0"
    return text(KPICTL_RUN_SNAPSHOTS_IN_SCAN).bindparams(margin=margin)


# Run-level candidates: terminal runs of the period completed at or after :scan_from (the
# watermark of an incremental cycle; the period start for a full scan).
RUN_CANDIDATES = f"""{TERMINAL} AND {IN_PERIOD}
    AND e.completed_at >= {{c_scan}}"""

# --full-refresh: an existing row is rewritten only when its recomputed value differs or no
# kpictl job wrote it (a row equal to its recomputation is only locked, not rewritten).
UPSERT_CHANGED = (
    UPSERT
    + """
    WHERE (kpi_snapshots.value, kpi_snapshots.unit, kpi_snapshots.metadata)
          IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.unit, EXCLUDED.metadata)
       OR kpi_snapshots.job_id IS NULL"""
)


CHUNK_TABLE = "kpictl_chunk_runs"


@dataclass(frozen=True)
class ChunkStatements:
    pick: TextClause
    analyze: TextClause
    clear: list[TextClause]  # a --full-refresh chunk: rows whose KPI lost its basis go first
    writes: list[TextClause]  # rowcounts add up to the snapshots written
    summary: TextClause
    drop: TextClause


def run_level_chunk(
    clock: SourceClock,
    *,
    only_new: bool,
    after_cursor: bool,
    upsert: bool = True,
    probe: bool = True,
) -> ChunkStatements:
    """Snapshot one keyset chunk of terminal runs: run_duration, token_usage,
    tool_call_success_rate. The statements, in order: pick the chunk's runs into a session temp
    table; ANALYZE it (so that PostgreSQL joins a large chunk to agent_runs and mcp_tool_calls
    by hashing and a small one through their indexes: a row estimate of a filtered CTE is often
    1, and a nested loop over 800,000 runs is slow); write each KPI's snapshots (three INSERTs);
    read the chunk's size and last key (the next chunk starts after it: `after_cursor`).

    A chunk that is not `only_new` (--full-refresh) recomputes every run of its range: a row
    whose value, unit or metadata differs (or that another writer left, without a job) is
    rewritten, a row equal to its recomputed value is left as it is (rewriting every row, by
    UPDATE or by DELETE and INSERT, costs 1.5 to 1.8 times a from-scratch run), and a
    token_usage or tool_call_success_rate row of a run that has no agent runs or tool calls
    any more is deleted. All in the chunk's transaction.

    `upsert=False` writes with a plain INSERT, which is markedly cheaper than ON CONFLICT: only
    for `only_new` chunks where nobody but kpictl writes run snapshots (the caller checks), so
    that no row of the chunk can exist yet nor appear meanwhile.

    `probe=False` leaves out an `only_new` chunk's per-run RUN_DONE probe: only when no run of
    the scan range can be done (KPICTL_RUN_SNAPSHOTS_IN_SCAN, checked by the caller)."""
    if not (upsert or only_new):
        raise ValueError("a plain INSERT (upsert=False) is only safe for only_new chunks")
    skip_existing = f"AND NOT {RUN_DONE}" if only_new and probe else ""
    cursor = (
        # The plain `>=` lets the scan start at the cursor on a one-column completed_at
        # index; the row comparison alone would only filter, rescanning earlier chunks.
        "AND e.completed_at >= :after_completed "
        "AND (e.completed_at, e.id) > (:after_completed, CAST(:after_id AS uuid))"
        if after_cursor
        else ""
    )
    pick = clocked_sql(
        f"""
CREATE TEMP TABLE {CHUNK_TABLE} ON COMMIT DROP AS
SELECT e.id, e.completed_at AS completed_raw,
       {{started}} AS started_at, {{completed}} AS completed_at
FROM workflow_executions e
WHERE {RUN_CANDIDATES}
  {cursor}
  {skip_existing}
ORDER BY e.completed_at, e.id
LIMIT :chunk_size
""",
        clock,
    )
    columns = (
        "INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, "
        "metadata, calculated_at, period_start, period_end, job_id)"
    )
    conflict = (UPSERT if only_new else UPSERT_CHANGED) if upsert else ""
    # Three statements, like the bound: one stream each, no UNION of differently shaped plans.
    writes = [
        text(
            f"""{columns}
SELECT :run_duration, :version, 'run', r.id,
       {rules.duration_ms("r.started_at", "r.completed_at")}, {rules.unit("run_duration")},
       NULL, now(), r.started_at, r.completed_at, CAST(:job_id AS uuid)
FROM {CHUNK_TABLE} r
{conflict}"""
        ),
        text(
            f"""{columns}
SELECT :token_usage, :version, 'run', r.id, sum({rules.agent_run_tokens("a")}),
       {rules.unit("token_usage")}, NULL, now(), r.started_at, r.completed_at,
       CAST(:job_id AS uuid)
FROM {CHUNK_TABLE} r JOIN agent_runs a ON a.execution_id = r.id
GROUP BY r.id, r.started_at, r.completed_at
{conflict}"""
        ),
        text(
            f"""{columns}
SELECT :tool_call_success_rate, :version, 'run', r.id,
       {rules.percent(f"count(*) FILTER (WHERE {rules.tool_call_succeeded('t')})", "count(*)")},
       {rules.unit("tool_call_success_rate")}, NULL, now(), r.started_at, r.completed_at,
       CAST(:job_id AS uuid)
FROM {CHUNK_TABLE} r JOIN mcp_tool_calls t ON t.execution_id = r.id
GROUP BY r.id, r.started_at, r.completed_at
{conflict}"""
        ),
    ]
    summary = text(
        f"SELECT (SELECT count(*) FROM {CHUNK_TABLE}) AS runs, last.completed_raw AS last_completed, "
        f"last.id AS last_id, (SELECT min(completed_at) FROM {CHUNK_TABLE}) AS earliest, "
        f"(SELECT max(completed_at) FROM {CHUNK_TABLE}) AS latest "
        f"FROM (SELECT NULL) one LEFT JOIN LATERAL (SELECT completed_raw, id "
        f"FROM {CHUNK_TABLE} ORDER BY completed_raw DESC, id DESC LIMIT 1) last ON true"
    )
    clear = [] if only_new else [WITHOUT_BASIS]
    return ChunkStatements(
        pick,
        text(f"ANALYZE {CHUNK_TABLE}"),
        clear,
        writes,
        summary,
        text(f"DROP TABLE {CHUNK_TABLE}"),
    )


# A --full-refresh chunk's token_usage and tool_call_success_rate rows of runs that no longer
# have agent runs (tool calls): their KPI has no value to recompute. The bound range of the
# chunk's completed_at instants ([:earliest, :latest], from its summary) prunes the run
# partitions when the statement is planned: the join alone would read every run partition,
# for every chunk.
WITHOUT_BASIS = text(
    f"""
DELETE FROM kpi_snapshots k USING {CHUNK_TABLE} r
WHERE k.level = 'run' AND k.kpi_version = :version
  AND k.period_end >= CAST(:earliest AS timestamptz)
  AND k.period_end <= CAST(:latest AS timestamptz)
  AND k.period_end = r.completed_at AND k.scope_id = r.id
  AND ((k.kpi_name = :token_usage
        AND NOT EXISTS (SELECT 1 FROM agent_runs a WHERE a.execution_id = r.id))
    OR (k.kpi_name = :tool_call_success_rate
        AND NOT EXISTS (SELECT 1 FROM mcp_tool_calls t WHERE t.execution_id = r.id)))
"""
)


# Does anything besides kpictl write run snapshots (the AFU-9 platform's trigger, or rows it
# left)? Then run-level writes must be upserts.
OTHER_RUN_WRITERS = text(
    """
SELECT EXISTS (SELECT 1 FROM kpi_snapshots WHERE job_id IS NULL AND level = 'run')
    OR EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
               WHERE NOT t.tgisinternal AND p.prosrc ILIKE '%kpi_snapshots%')
"""
)


def pending_runs(clock: SourceClock, *, probe: bool = True) -> TextClause:
    """How many runs the run level will snapshot (for the log line and the progress bar):
    those without snapshots (`probe`), or every candidate (--full-refresh, or a scan range
    where no run is done)."""
    skip_existing = f"AND NOT {RUN_DONE}" if probe else ""
    return clocked_sql(
        f"SELECT count(*) FROM workflow_executions e WHERE {RUN_CANDIDATES} {skip_existing}",
        clock,
    )
