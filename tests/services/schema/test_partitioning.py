"""Revision 0008 and `kpictl/db/partitions.py`: kpi_snapshots partitioned by level, then by
period_end; partitions made ahead by the jobs; the default partition catching a row no
partition holds; the in-place conversion of a populated table (rows identical, also with writes
during the copy) and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from kpictl.db import partitions
from tests import factories as f
from tests.conftest import run_cli
from tests.helpers import AT_GATE, db_now, scalar, spawn, step_gate, terminate, wait_for

ROWS = (  # timestamps as text: one row's period ends at infinity, which Python cannot hold
    "SELECT id, level, kpi_name, kpi_version, scope_id, value, unit, metadata, "
    "calculated_at::text, period_start::text, period_end::text, job_id, created_at::text "
    "FROM kpi_snapshots ORDER BY id"
)


def all_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text(ROWS)).all()


def relkind(engine, name: str) -> str | None:
    return scalar(engine, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(:n)", n=name)


def holder(engine, snapshot_id) -> str:
    return scalar(
        engine, "SELECT tableoid::regclass::text FROM kpi_snapshots WHERE id = :id", id=snapshot_id
    )


def migrate(url: str, *args: str) -> None:
    result = run_cli(["migrate", *args], url)
    assert result.exit_code == 0, result.output


def populated(engine, now: datetime) -> None:
    """Rows of every level over the last 100 days, one far in the past, one at infinity."""
    with engine.begin() as conn:
        repo = f.repository(conn)
        for days_back in range(0, 100, 3):
            end = now - timedelta(days=days_back)
            run = f.execution(conn, repo, "completed", end - timedelta(hours=1), end)
            f.snapshot(
                conn,
                "run_duration",
                Decimal(3_600_000),
                end - timedelta(hours=1),
                end,
                level="run",
                scope_id=run,
            )
            f.snapshot(
                conn,
                "product_success_rate",
                Decimal(days_back),
                end - timedelta(days=1),
                end,
                level="product",
                scope_id=repo,
            )
            f.snapshot(conn, "mtti", Decimal(days_back) / 3, end - timedelta(days=1), end)
        f.snapshot(
            conn,
            "mtti",
            Decimal(1),
            datetime(2001, 1, 1, tzinfo=UTC),
            datetime(2001, 1, 2, tzinfo=UTC),
        )
        conn.execute(
            text(
                "INSERT INTO kpi_snapshots (kpi_name, level, value, period_start, period_end) "
                "VALUES ('mtti', 'factory', 2, '2026-01-01', 'infinity')"
            )
        )


def test_a_new_database_is_partitioned_with_partitions_ahead(db_url, engine):
    assert relkind(engine, "kpi_snapshots") == "p"
    now = db_now(engine)
    for level in partitions.LEVELS:
        assert relkind(engine, partitions.level_table(level)) == "p"
        assert relkind(engine, partitions.default_partition(level)) == "r"
    # run partitions for today and the week ahead; a month ahead for the others
    assert relkind(engine, partitions.containing("run", now).name) == "r"
    assert relkind(engine, partitions.containing("run", now + timedelta(days=6)).name) == "r"
    assert relkind(engine, partitions.containing("product", now + timedelta(days=31)).name) == "r"
    key = scalar(
        engine,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_kpi_snapshots'",
    )
    assert key == "PRIMARY KEY (id, level, period_end)"


def test_rows_land_in_their_partition_and_an_odd_one_in_the_default(db_url, engine):
    now = db_now(engine)
    with engine.begin() as conn:
        recent = f.snapshot(
            conn, "mtti", Decimal(1), now - timedelta(days=1), now - timedelta(minutes=1)
        )
        odd = f.snapshot(
            conn,
            "run_duration",
            Decimal(5),
            datetime(2020, 5, 5, tzinfo=UTC),
            datetime(2020, 5, 5, 1, tzinfo=UTC),
            level="run",
        )
    assert (
        holder(engine, recent) == partitions.containing("factory", now - timedelta(minutes=1)).name
    )
    assert holder(engine, odd) == "kpi_snapshots_run_default"
    checks = json.loads(run_cli(["doctor", "--format", "json"], db_url).stdout)["data"]["checks"]
    (check,) = [c for c in checks if c["name"] == "partitions"]
    assert check["status"] == "warn" and "run 1" in check["detail"]
    # a backfill over that day makes its partition and moves the row out of the default
    result = run_cli(["backfill", "--since", "2020-05-05", "--until", "2020-05-06"], db_url)
    assert result.exit_code == 0, result.output
    assert holder(engine, odd) == "kpi_snapshots_run_20200505"
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots_run_default") == 0
    checks = json.loads(run_cli(["doctor", "--format", "json"], db_url).stdout)["data"]["checks"]
    (check,) = [c for c in checks if c["name"] == "partitions"]
    assert check["status"] == "ok"


def test_aggregate_makes_todays_partition_when_it_is_missing(db_url, engine):
    now = db_now(engine)
    today = partitions.containing("run", now).name
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {today}"))
        repo = f.repository(conn)
        run = f.execution(
            conn, repo, "completed", now - timedelta(minutes=30), now - timedelta(minutes=20)
        )
    assert run_cli(["aggregate"], db_url).exit_code == 0
    assert relkind(engine, today) == "r"
    written = scalar(engine, "SELECT id FROM kpi_snapshots WHERE scope_id = :id", id=run)
    assert holder(engine, written) == today


def test_in_place_conversion_keeps_every_row_and_goes_back(empty_db_url, engine_for):
    migrate(empty_db_url, "--with-sources", "--to", "0007")
    engine = engine_for(empty_db_url)
    now = db_now(engine)
    populated(engine, now)
    before = all_rows(engine)
    assert relkind(engine, "kpi_snapshots") == "r" and len(before) == 3 * 34 + 2
    migrate(empty_db_url)
    assert relkind(engine, "kpi_snapshots") == "p"
    assert all_rows(engine) == before  # counts, keys and values identical
    in_default = scalar(engine, "SELECT count(*) FROM kpi_snapshots_factory_default")
    assert in_default == 2  # 2001 (older than kept history) and infinity
    migrate(empty_db_url, "--downgrade", "0007")
    assert relkind(engine, "kpi_snapshots") == "r"
    assert all_rows(engine) == before
    key = scalar(
        engine,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_kpi_snapshots'",
    )
    assert key == "PRIMARY KEY (id)"


def test_writes_during_the_copy_are_kept(empty_db_url, engine_for):
    """The platform keeps writing while 0008 copies: an insert, an update and a delete made
    after the copy of their rows end up in the converted table exactly as in the old one."""
    migrate(empty_db_url, "--with-sources", "--to", "0007")
    engine = engine_for(empty_db_url)
    now = db_now(engine)
    populated(engine, now)
    first, second = [row.id for row in all_rows(engine)[:2]]
    with step_gate(engine) as open_gate:
        process = spawn(["migrate"], empty_db_url, KPICTL_DEBUG_STEP_GATE="convert")
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 1)  # after the copy's (only) batch
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE kpi_snapshots SET value = 42 WHERE id = :id"), {"id": first}
                )
                conn.execute(text("DELETE FROM kpi_snapshots WHERE id = :id"), {"id": second})
                f.snapshot(
                    conn, "mtti", Decimal(7), now - timedelta(hours=2), now - timedelta(hours=1)
                )
            expected = all_rows(engine)
            open_gate()
            _out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert relkind(engine, "kpi_snapshots") == "p"
    assert all_rows(engine) == expected
    assert scalar(engine, "SELECT value FROM kpi_snapshots WHERE id = :id", id=first) == 42
    assert (
        scalar(engine, "SELECT count(*) FROM pg_trigger WHERE tgname = 'kpictl_snapshots_mirror'")
        == 0
    )


def test_a_conversion_cut_off_during_the_copy_starts_over_when_run_again(empty_db_url, engine_for):
    """The server ends migrate's connection mid-copy: migrate exits 69, the old table is whole
    and still in use, the half-built table and the mirror are left; the next migrate discards
    them and converts, with every row (also one written in between)."""
    migrate(empty_db_url, "--with-sources", "--to", "0007")
    engine = engine_for(empty_db_url)
    now = db_now(engine)
    populated(engine, now)
    with step_gate(engine):
        process = spawn(["migrate"], empty_db_url, KPICTL_DEBUG_STEP_GATE="convert")
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 1)
            terminate(engine, scalar(engine, AT_GATE.replace("count(*)", "l.pid")))
            _out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 69, err
    assert "database unreachable" in err and "Traceback" not in err
    assert relkind(engine, "kpi_snapshots") == "r"
    assert relkind(engine, "kpi_snapshots_new") == "p"  # left half-built
    with engine.begin() as conn:  # the platform writes on meanwhile (mirrored, then discarded)
        f.snapshot(conn, "mtti", Decimal(9), now - timedelta(hours=3), now - timedelta(hours=2))
    before = all_rows(engine)

    result = run_cli(["migrate"], empty_db_url)
    assert result.exit_code == 0, result.output
    assert relkind(engine, "kpi_snapshots") == "p"
    assert relkind(engine, "kpi_snapshots_new") is None
    assert all_rows(engine) == before
    assert (
        scalar(engine, "SELECT count(*) FROM pg_proc WHERE proname = 'kpictl_snapshots_mirror'")
        == 0
    )


def test_the_sql_of_0008_converts_a_populated_table(empty_db_url, engine_for):
    """`migrate --sql`'s version: one transaction, default partitions only."""
    import psycopg

    from kpictl.services.schema import migrate as service
    from tests.conftest import libpq

    migrate(empty_db_url, "--with-sources", "--to", "0007")
    engine = engine_for(empty_db_url)
    populated(engine, db_now(engine))
    before = all_rows(engine)
    script = service.offline_sql("0008", upgrade_from="0007")
    with psycopg.connect(libpq(empty_db_url), autocommit=True) as conn:
        conn.execute(script)
    assert relkind(engine, "kpi_snapshots") == "p"
    assert all_rows(engine) == before
    # the later revisions, then the next aggregate makes the partitions and moves their rows
    # out of the defaults
    migrate(empty_db_url)
    assert run_cli(["aggregate"], empty_db_url).exit_code == 0
    today = partitions.containing("run", db_now(engine)).name
    assert relkind(engine, today) == "r"
