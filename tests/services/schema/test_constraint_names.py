"""Revision 0007: the two CHECK constraints 0001 named twice are renamed in place, and
`offline_sql(upgrade_from=...)` prints only the later revisions (`migrate --sql --from REV`)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from kpictl.db.engine import make_engine
from kpictl.errors import UsageError
from kpictl.services.schema import migrate
from tests.conftest import libpq, run_cli, test_settings

OWN_CHECKS = {
    ("kpi_snapshots", "ck_kpi_snapshots_level"),
    ("kpi_snapshots", "ck_kpi_snapshots_value_finite"),
    ("kpi_aggregation_jobs", "ck_kpi_aggregation_jobs_status"),
}
DOUBLED = {
    ("kpi_snapshots", "ck_kpi_snapshots_ck_kpi_snapshots_level"),
    ("kpi_snapshots", "ck_kpi_snapshots_value_finite"),
    ("kpi_aggregation_jobs", "ck_kpi_aggregation_jobs_ck_kpi_aggregation_jobs_status"),
}


def checks(url: str) -> set[tuple[str, str]]:
    engine = make_engine(url, test_settings(url))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                "WHERE contype = 'c' AND connamespace = 'public'::regnamespace "
                "AND conrelid::regclass::text IN ('kpi_snapshots', 'kpi_aggregation_jobs')"
            )
        ).all()
    engine.dispose()
    return {(table, name) for table, name in rows}


def migrated_to(url: str, revision: str) -> None:
    result = run_cli(["migrate", "--with-sources", "--to", revision], url)
    assert result.exit_code == 0, result.output


def as_before_0007(url: str) -> None:
    """The constraint names every database migrated by kpictl 0001-0006 had (0001 let Alembic
    apply the naming convention to full names; it now uses op.f())."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for (table, old), (_, new) in zip(
            sorted(OWN_CHECKS - DOUBLED), sorted(DOUBLED - OWN_CHECKS), strict=True
        ):
            conn.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def test_a_new_database_has_each_name_once(db_url):
    assert checks(db_url) == OWN_CHECKS


def test_upgrade_renames_the_doubled_names_in_place_and_keeps_them_enforced(empty_db_url):
    migrated_to(empty_db_url, "0006")
    assert checks(empty_db_url) == OWN_CHECKS  # 0001 names them right now
    as_before_0007(empty_db_url)
    assert checks(empty_db_url) == DOUBLED
    with psycopg.connect(libpq(empty_db_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO kpi_aggregation_jobs (id, job_type, status, started_at) "
            "VALUES (gen_random_uuid(), 'aggregate', 'completed', now())"
        )
        oid_before = conn.execute("SELECT 'kpi_aggregation_jobs'::regclass::oid").fetchone()
    migrated_to(empty_db_url, "head")
    assert checks(empty_db_url) == OWN_CHECKS
    with psycopg.connect(libpq(empty_db_url), autocommit=True) as conn:
        # renamed, not recreated: same table, the row kept, the rule still enforced
        assert conn.execute("SELECT 'kpi_aggregation_jobs'::regclass::oid").fetchone() == oid_before
        assert conn.execute("SELECT count(*) FROM kpi_aggregation_jobs").fetchone() == (1,)
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_kpi_aggregation_jobs_status"):
            conn.execute(
                "INSERT INTO kpi_aggregation_jobs (id, job_type, status, started_at) "
                "VALUES (gen_random_uuid(), 'aggregate', 'bogus', now())"
            )
    # a second upgrade, and a downgrade to 0006 and back, leave the names as they are
    migrated_to(empty_db_url, "head")
    assert run_cli(["migrate", "--downgrade", "0006"], empty_db_url).exit_code == 0
    assert checks(empty_db_url) == OWN_CHECKS
    migrated_to(empty_db_url, "head")
    assert checks(empty_db_url) == OWN_CHECKS


def test_the_sql_from_a_revision_upgrades_a_database_at_that_revision(empty_db_url):
    migrated_to(empty_db_url, "0006")
    as_before_0007(empty_db_url)
    script = migrate.offline_sql("0007", upgrade_from="0006")
    assert "Running upgrade 0006 -> 0007" in script
    assert "Running upgrade 0005" not in script and "CREATE TABLE" not in script
    with psycopg.connect(libpq(empty_db_url), autocommit=True) as conn:
        conn.execute(script)
        assert conn.execute("SELECT version_num FROM kpictl_alembic_version").fetchone() == (
            "0007",
        )
    assert checks(empty_db_url) == OWN_CHECKS


@pytest.mark.parametrize(
    ("start", "end", "upgrades"),
    [
        (
            "0003",
            "head",
            [
                "0003 -> 0004",
                "0004 -> 0005",
                "0005 -> 0006",
                "0006 -> 0007",
                "0007 -> 0008",
                "0008 -> 0009",
            ],
        ),
        ("0003", "0005", ["0003 -> 0004", "0004 -> 0005"]),
        ("base", "0001", [" -> 0001"]),
        ("0007", "head", ["0007 -> 0008", "0008 -> 0009"]),
        ("0009", "head", []),
        ("head", "head", []),
    ],
)
def test_the_sql_from_a_revision_has_only_the_later_revisions(start, end, upgrades):
    script = migrate.offline_sql(end, upgrade_from=start)
    shown = [line.removeprefix("-- Running upgrade ") for line in script.splitlines()]
    assert [line for line in shown if "->" in line and not line.startswith("--")] == upgrades


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("0005", "0003", "--from 0005 is after 0003"),
        ("head", "0001", "--from head is after 0001"),
        ("0099", "head", "unknown revision '0099'"),
    ],
)
def test_a_start_after_the_target_is_a_usage_error(start, end, message):
    with pytest.raises(UsageError, match=message):
        migrate.offline_sql(end, upgrade_from=start)


def test_sources_are_created_only_from_an_empty_schema():
    with pytest.raises(UsageError, match="--with-sources"):
        migrate.offline_sql(upgrade_from="0003", with_sources=True)
