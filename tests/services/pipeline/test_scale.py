"""Scale smoke test: 200,000 runs aggregate correctly, and the number of SQL statements does not
grow with the number of runs or products."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, text

from kpictl.db import partitions
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline import steps
from kpictl.services.pipeline.periods import Period

PERIOD = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC))


def generate(engine, runs: int, products: int) -> None:
    """Run i: repository i % products, status by (i // 7) % 10 (0-6 completed, 7-8 failed,
    9 cancelled), completing inside PERIOD, lasting (i % 60) + 1 minutes."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO repositories (id, owner, name) SELECT "
                "md5('repo' || p)::uuid, 'owner', 'repo' || p FROM generate_series(0, :products - 1) p"
            ),
            {"products": products},
        )
        conn.execute(
            text(
                """
INSERT INTO workflow_executions (repository_id, status, started_at, completed_at)
SELECT md5('repo' || (i % :products))::uuid,
       CASE WHEN (i / 7) % 10 < 7 THEN 'completed' WHEN (i / 7) % 10 < 9 THEN 'failed'
            ELSE 'cancelled' END,
       c - ((i % 60) + 1) * interval '1 minute', c
FROM generate_series(1, :runs) i,
     LATERAL (SELECT CAST(:start AS timestamptz) + (i % 600000) * interval '1 second' AS c) t
"""
            ),
            {"products": products, "runs": runs, "start": PERIOD.start + timedelta(hours=1)},
        )
        conn.execute(text("ANALYZE"))


def status(i: int) -> str:
    """The generator's status rule, restated in Python for the expected values."""
    return "completed" if (i // 7) % 10 < 7 else "failed" if (i // 7) % 10 < 9 else "cancelled"


CHUNK = "CREATE TEMP TABLE kpictl_chunk_runs"
PROBE = "AND NOT (SELECT 1 FROM kpi_snapshots k"  # run_level_sql.RUN_DONE
PENDING_COUNT = "SELECT count(*) FROM workflow_executions e WHERE"  # run_level_sql.pending_runs


def pending_counts(statements: list[str]) -> int:
    """How many of `statements` count the run level's pending runs (the candidates of its scan
    range; the other count of runs, of those without a completed_at, has no scan range)."""
    return sum(
        s.lstrip().startswith(PENDING_COUNT) and "e.completed_at >=" in s for s in statements
    )


def count_statements(engine, chunk_size: int) -> tuple[list[str], pipeline.PipelineResult]:
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        result = pipeline.aggregate(
            engine,
            PERIOD,
            metadata={},
            options=steps.PipelineOptions(chunk_size=chunk_size),
            stop=StopRequest(),
        )
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return statements, result


@pytest.mark.slow
def test_200k_runs_counts_match_and_statements_do_not_grow(engine, pg_server):
    with engine.begin() as conn:  # the period's partitions, made once (not counted below)
        now = conn.execute(text("SELECT now()")).scalar_one()
        partitions.ensure_around(conn, PERIOD.start, PERIOD.end, now)
    generate(engine, 2_000, 5)
    small_count, small = count_statements(engine, chunk_size=1_000_000)
    assert small.periods[0].runs == sum(status(i) != "cancelled" for i in range(1, 2_001))

    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE workflow_executions, repositories, kpi_snapshots, kpi_aggregation_jobs")
        )
    generate(engine, 200_000, 50)
    large_count, large = count_statements(engine, chunk_size=1_000_000)
    assert len(large_count) == len(small_count)

    runs = range(1, 200_001)
    terminal = [i for i in runs if status(i) != "cancelled"]
    completed = [i for i in runs if status(i) == "completed"]
    counts = large.periods[0]
    assert counts.runs == len(terminal)
    assert counts.run_snapshots == len(terminal)  # run_duration only: no agent runs or calls
    assert counts.products == 50 and counts.product_snapshots == 150
    with engine.connect() as conn:
        factory = dict(
            conn.execute(
                text(
                    "SELECT kpi_name, value FROM kpi_snapshots WHERE level = 'factory' AND period_end = :end"
                ),
                {"end": PERIOD.end},
            ).all()
        )
        per_product = conn.execute(
            text(
                "SELECT min((metadata->>'terminal_runs')::int), max((metadata->>'terminal_runs')::int) "
                "FROM kpi_snapshots WHERE level = 'product' AND kpi_name = 'product_throughput'"
            )
        ).one()
    expected_rate = Decimal(100 * len(completed)) / len(terminal)
    assert round(factory["success_rate"], 6) == round(expected_rate, 6)
    assert round(factory["factory_throughput"], 6) == round(Decimal(len(terminal)) / 7, 6)
    expected_mtti = Decimal(sum(((i % 60) + 1) * 60_000 for i in terminal)) / len(terminal)
    assert round(factory["mtti"], 6) == round(expected_mtti, 6)
    by_product = [sum(1 for i in terminal if i % 50 == p) for p in range(50)]
    assert per_product == (min(by_product), max(by_product))


@pytest.mark.slow
def test_the_run_level_is_announced_with_its_runs_counted_only_for_a_backlog(engine, caplog):
    """A backlog (its first chunk full) is counted for the log line and the progress bar; a
    cycle whose runs fit in its first chunk takes their number from the chunk."""
    generate(engine, 25_000, 3)
    terminal = sum(status(i) != "cancelled" for i in range(1, 25_001))
    with caplog.at_level(logging.INFO, logger="kpictl"):
        statements, _result = count_statements(engine, chunk_size=10_000)
    assert f"Processing {terminal} run-level aggregations" in caplog.messages
    assert pending_counts(statements) == 1
    caplog.clear()
    with engine.begin() as conn:  # three new runs, in the next cycle's look-back
        conn.execute(
            text(
                "INSERT INTO workflow_executions (repository_id, status, started_at, completed_at) "
                "SELECT md5('repo0')::uuid, 'completed', CAST(:end AS timestamptz) - "
                "interval '10 minutes', CAST(:end AS timestamptz) - interval '5 minutes' "
                "FROM generate_series(1, 3)"
            ),
            {"end": PERIOD.end},
        )
    with caplog.at_level(logging.INFO, logger="kpictl"):
        statements, second = count_statements(engine, chunk_size=10_000)
    assert second.periods[0].runs == 3
    assert "Processing 3 run-level aggregations" in caplog.messages
    assert pending_counts(statements) == 0


def test_backlog_is_processed_in_chunks(engine):
    generate(engine, 25_000, 3)
    statements, result = count_statements(engine, chunk_size=10_000)
    chunks = [s for s in statements if s.lstrip().startswith(CHUNK)]
    assert len(chunks) == 3
    # no run of the period is done yet: the chunks skip the per-run probe
    assert not any(PROBE in chunk for chunk in chunks)
    terminal = sum(status(i) != "cancelled" for i in range(1, 25_001))  # three chunks
    assert result.periods[0].runs == terminal
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM kpi_snapshots WHERE level = 'run'")
            ).scalar_one()
            == terminal
        )
    statements, second = count_statements(engine, chunk_size=10_000)
    assert second.periods[0].runs == 0  # nothing left: the next cycle costs no run-level work
    assert sum(s.lstrip().startswith(CHUNK) for s in statements) == 1
