"""Retention on the partitioned kpi_snapshots: a day partition whose rows are all past the
cut-off is dropped whole, the day that straddles the cut-off is trimmed row by row, nothing
newer is touched; `--dry-run` names the partitions and changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text

from kpictl.db import partitions
from kpictl.services.maintenance import retention as service
from tests import factories as f
from tests.conftest import run_cli
from tests.helpers import db_now, scalar

PER_DAY = 4  # run snapshots a day, at 02:00, 08:00, 14:00, 20:00 UTC


def day_partitions(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'kpi_snapshots_run'::regclass "
                    "AND c.relname <> 'kpi_snapshots_run_default'"
                )
            ).scalars()
        )


def run_row(conn, end, calculated_at) -> None:
    """A run_duration snapshot of a run that ended at `end`, an hour long."""
    f.snapshot(
        conn,
        "run_duration",
        Decimal(1),
        end - timedelta(hours=1),
        end,
        level="run",
        scope_id=uuid.uuid4(),
        calculated_at=calculated_at,
    )


def aged_runs(engine, now, days: range) -> None:
    """PER_DAY run snapshots on each of `days` days back, calculated when their period ended;
    the partitions made first (as the cycles that wrote them would have)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        partitions.ensure(conn, "run", midnight - timedelta(days=days.stop - 1), now)
        for back in days:
            for hour in (2, 8, 14, 20):
                end = midnight - timedelta(days=back) + timedelta(hours=hour)
                run_row(conn, end, calculated_at=end)


def test_whole_days_are_dropped_and_the_straddling_day_trimmed(db_url, engine):
    now = db_now(engine).replace(hour=11, minute=0, second=0, microsecond=0)
    aged_runs(engine, now, range(86, 96))  # days 86..95 back
    cutoff = now - timedelta(days=90)  # day 90 back, 11:00: its 02:00 and 08:00 rows are past
    policy = service.make_policy(run_days=90)

    planned, _ = service.run_retention(engine, policy, now=now, dry_run=True)
    (run,) = [target for target in planned.targets if target.target == "run"]
    gone = [partitions.containing("run", now - timedelta(days=back)).name for back in range(91, 96)]
    assert run.partitions == sorted(gone)
    assert run.deleted == 5 * PER_DAY + 2  # every row past the cut-off, exactly
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 10 * PER_DAY

    result, _ = service.run_retention(engine, policy, now=now)
    (run,) = [target for target in result.targets if target.target == "run"]
    assert run.partitions == sorted(gone)
    assert run.deleted == 2  # the straddling day's two rows before 11:00, one by one
    assert not set(gone) & set(day_partitions(engine))
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == (
        5 * PER_DAY - 2
    )
    assert scalar(
        engine, "SELECT min(calculated_at) FROM kpi_snapshots WHERE level = 'run'"
    ) == cutoff + timedelta(hours=3)  # 14:00 of the straddling day
    again, _ = service.run_retention(engine, policy, now=now)  # nothing left to do
    (run,) = [target for target in again.targets if target.target == "run"]
    assert (run.partitions, run.deleted) == ([], 0)


def test_a_partition_recomputed_after_the_cut_off_is_trimmed_not_dropped(db_url, engine):
    """calculated_at decides (docs/spec/pipeline.md §5): a row of an old day recomputed
    yesterday stays, so its partition cannot go whole."""
    now = db_now(engine)
    aged_runs(engine, now, range(95, 96))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE kpi_snapshots SET calculated_at = now() - interval '1 day' "
                "WHERE id = (SELECT id FROM kpi_snapshots WHERE level = 'run' LIMIT 1)"
            )
        )
    result, _ = service.run_retention(engine, service.make_policy(run_days=90), now=now)
    (run,) = [target for target in result.targets if target.target == "run"]
    kept = partitions.containing("run", now - timedelta(days=95)).name
    assert kept not in run.partitions and kept in day_partitions(engine)
    assert run.deleted == PER_DAY - 1
    # the empty days after it, wholly before the cut-off, went whole
    assert run.partitions == sorted(
        partitions.containing("run", now - timedelta(days=back)).name for back in range(91, 95)
    )
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 1


def test_expired_rows_in_several_partitions_all_go_in_bounded_batches(db_url, engine):
    """Past the cut-off in three tables besides the dropped days: a day kept by one recomputed
    row, the default partition (a period older than any partition), and yesterday's partition
    (a row calculated long before its period: odd, but calculated_at decides). Every one goes,
    in batches of 2, and nothing else."""
    now = db_now(engine)
    aged_runs(engine, now, range(95, 96))
    recent = now - timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE kpi_snapshots SET calculated_at = now() - interval '1 day' "
                "WHERE id = (SELECT id FROM kpi_snapshots WHERE level = 'run' LIMIT 1)"
            )
        )
        for period_end, calculated_at in (
            (now - timedelta(days=2000), now - timedelta(days=2000)),  # default partition
            (now - timedelta(days=2000), now - timedelta(days=1999)),
            (now - timedelta(days=2000), now - timedelta(days=1998)),
            (recent, now - timedelta(days=300)),  # yesterday's partition
            (recent, now),  # kept
        ):
            run_row(conn, period_end, calculated_at)
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots_run_default") == 3
    result, _ = service.run_retention(
        engine, service.make_policy(run_days=90, batch_size=2), now=now
    )
    (run,) = [target for target in result.targets if target.target == "run"]
    assert run.deleted == (PER_DAY - 1) + 3 + 1
    assert run.batches == 2 + 2 + 1  # 3 rows: 2 + 1; 3 rows: 2 + 1; 1 row: 1
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 2
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM kpi_snapshots WHERE level = 'run' AND calculated_at < :cutoff",
            cutoff=now - timedelta(days=90),
        )
        == 0
    )


def test_the_cli_reports_the_partitions(db_url, engine):
    now = db_now(engine)
    aged_runs(engine, now, range(92, 94))
    dry = run_cli(["retention", "--dry-run", "--format", "json"], db_url)
    assert dry.exit_code == 0, dry.output
    (run,) = [row for row in json.loads(dry.stdout)["data"] if row["target"] == "run"]
    assert run["would_delete"] == 2 * PER_DAY
    assert len(run["would_drop_partitions"].split()) == 3  # days 92, 93 and the empty day 91
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 2 * PER_DAY
    done = run_cli(["retention", "--format", "json"], db_url)
    (run,) = [row for row in json.loads(done.stdout)["data"] if row["target"] == "run"]
    assert len(run["partitions_dropped"].split()) == 3 and run["deleted"] == 0
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 0
    job = scalar(
        engine,
        "SELECT metadata FROM kpi_aggregation_jobs WHERE job_type = 'retention' "
        "ORDER BY started_at DESC LIMIT 1",
    )
    assert len(job["partitions_dropped"]["run"]) == 3
