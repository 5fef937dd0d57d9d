"""Tenant isolation of `kpi_history` (history.md §4) with real, non-owner, non-superuser roles.

The test databases are owned by a superuser, which bypasses row-level security even when it is
forced; every claim here is therefore checked through a role created for the test with
`CREATE ROLE ... LOGIN` and plain GRANTs. The embedded server trusts local connections, so a
session for that role is the test URL with another user name.
"""

from __future__ import annotations

import json
import uuid
from datetime import date

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from kpictl.db.engine import make_engine
from kpictl.errors import CommandFailed, UsageError
from kpictl.services.history.export import ExportQuery, stream_history
from kpictl.services.history.tenants import (
    TenantArgument,
    parse_tenant_argument,
    resolve_tenant,
    set_tenant,
)
from tests import factories as f
from tests.conftest import run_cli, test_settings
from tests.helpers import login_role

W = date(2026, 1, 5)


@pytest.fixture
def two_tenants(engine):
    """Tenants a and b, each with one AVI report and a history row written by the owner side."""
    with engine.begin() as conn:
        a = f.tenant(conn, "tenant-a")
        b = f.tenant(conn, "tenant-b")
        f.avi_report(conn, a, W, aiv_pct=11)
        f.avi_report(conn, b, W, aiv_pct=22)
    return {"a": a, "b": b}


def filled(db_url: str) -> None:
    assert run_cli(["history", "fill"], db_url).exit_code == 0


@pytest.fixture
def writer_url(db_url, two_tenants):
    filled(db_url)
    with login_role(db_url, "SELECT, INSERT, UPDATE, DELETE") as url:
        yield url


def test_role_is_not_owner_nor_superuser(writer_url):
    engine = make_engine(writer_url, test_settings(writer_url))
    with engine.connect() as conn:
        superuser, owner, me = conn.execute(
            text(
                "SELECT rolsuper, pg_get_userbyid(c.relowner), current_user FROM pg_roles r, "
                "pg_class c WHERE r.rolname = current_user AND c.relname = 'kpi_history'"
            )
        ).one()
    engine.dispose()
    assert superuser is False and owner != me


def test_no_tenant_set_sees_nothing(writer_url):
    engine = make_engine(writer_url, test_settings(writer_url))
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 0
        conn.execute(text("SELECT set_config('app.tenant', '', true)"))
        assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 0
    engine.dispose()


def test_tenant_a_never_sees_or_changes_b(writer_url, two_tenants, engine):
    a, b = two_tenants["a"], two_tenants["b"]
    role_engine = make_engine(writer_url, test_settings(writer_url))
    with role_engine.begin() as conn:
        set_tenant(conn, a)
        seen = conn.execute(text("SELECT tenant_id, aiv_pct FROM kpi_history")).all()
        assert [tuple(row) for row in seen] == [(a, 11)]
        # B's rows are invisible to UPDATE and DELETE: nothing happens to them
        assert conn.execute(text("UPDATE kpi_history SET aiv_pct = 0")).rowcount == 1
        deleted = conn.execute(text("DELETE FROM kpi_history WHERE tenant_id = :b"), {"b": b})
        assert deleted.rowcount == 0
    # inserting a row for B while scoped to A is refused by the policy's WITH CHECK
    with (
        pytest.raises(ProgrammingError, match="row-level security") as refused,
        role_engine.begin() as conn,
    ):
        set_tenant(conn, a)
        conn.execute(
            text("INSERT INTO kpi_history (tenant_id, as_of) VALUES (:b, '2026-02-02')"), {"b": b}
        )
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
    # the setting is transaction-local: the next transaction on a new session sees nothing
    with role_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 0
    role_engine.dispose()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, aiv_pct FROM kpi_history ORDER BY 2")).all()
    assert [tuple(row) for row in rows] == [(a, 0), (b, 22)]


def test_export_as_role_shows_only_that_tenant(writer_url, two_tenants):
    for slug, value in (("tenant-a", "11.00"), ("tenant-b", "22.00")):
        result = run_cli(["history", "export", "--tenant", slug, "--format", "csv"], writer_url)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1] == f"2026-01-05,{value},,,,100.00,"


def test_read_only_dashboard_role(writer_url, db_url, two_tenants):
    """docs/SECURITY.md: SELECT on kpi_history plus `kpictl history grant` is enough for
    dashboards and export; SELECT alone reads nothing (revision 0006)."""
    with login_role(db_url, "SELECT", jobs=False) as reader_url:
        refused = run_cli(["history", "export", "--tenant", "tenant-b"], reader_url)
        assert refused.exit_code == 77, refused.output
        role = make_url(reader_url).username
        granted = run_cli(["history", "grant", "--tenant", "tenant-b", "--role", role], db_url)
        assert granted.exit_code == 0, granted.output
        result = run_cli(["history", "export", "--tenant", "tenant-b"], reader_url)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1:] == ["2026-01-05,22.00,,,,100.00,"]  # b's row only
        engine = make_engine(reader_url, test_settings(reader_url))
        with (
            pytest.raises(ProgrammingError, match="permission denied") as refused,
            engine.begin() as conn,
        ):
            set_tenant(conn, two_tenants["b"])
            conn.execute(text("UPDATE kpi_history SET aiv_pct = 0"))
        engine.dispose()
        assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)


@pytest.mark.parametrize("concurrency", ["1", "4"])  # one set-based chunk / one per tenant
def test_fill_as_writer_role(writer_url, engine, two_tenants, concurrency):
    """Both fill paths work for a non-owner role under forced RLS."""
    with engine.begin() as conn:
        f.avi_report(conn, two_tenants["b"], date(2026, 1, 12), aiv_pct=33)
    args = ["history", "fill", "--format", "json", "--concurrency", concurrency]
    result = run_cli(args, writer_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"] == {"ok": 2, "skipped": 0, "total": 2, "errors": []}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, as_of, aiv_pct FROM kpi_history ORDER BY 3"))
        assert [tuple(row) for row in rows] == [
            (two_tenants["a"], W, 11),
            (two_tenants["b"], W, 22),
            (two_tenants["b"], date(2026, 1, 12), 33),
        ]


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_forbidden_for_every_tenant_exits_77(db_url, engine, two_tenants, concurrency):
    with login_role(db_url, "SELECT") as url:
        args = ["history", "fill", "--format", "json", "--concurrency", concurrency]
        result = run_cli(args, url)
        assert result.exit_code == 77, result.output
        document = json.loads(result.stdout)["data"]
        assert (document["ok"], document["skipped"], document["total"]) == (0, 0, 2)
        assert [error["code"] for error in document["errors"]] == ["FORBIDDEN", "FORBIDDEN"]
        assert [error["slug"] for error in document["errors"]] == ["tenant-a", "tenant-b"]
        single = run_cli(["history", "fill", "--tenant", "tenant-a", "--format", "json"], url)
        assert single.exit_code == 77
        assert json.loads(single.stdout)["data"]["error"] == "FORBIDDEN"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 0


def test_forbidden_with_skips_still_exits_77(db_url, engine, two_tenants):
    """A tenant without a report is skipped (it had nothing to write), not FORBIDDEN."""
    with engine.begin() as conn:
        f.tenant(conn, "tenant-c")  # NO_AVI
    with login_role(db_url, "SELECT") as url:
        result = run_cli(["history", "fill", "--format", "json"], url)
    document = json.loads(result.stdout)["data"]
    assert (document["ok"], document["skipped"], document["total"]) == (0, 1, 3)
    assert [(e["slug"], e["code"]) for e in document["errors"]] == [
        ("tenant-a", "FORBIDDEN"),
        ("tenant-b", "FORBIDDEN"),
    ]
    assert result.exit_code == 77


HOSTILE = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from("'\";-\\%_:$()* \t\n\x00aAé字"), max_size=40),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True),
    st.uuids().map(str),
    st.sampled_from(
        [
            "tenant-b' OR '1'='1",
            "tenant-a; SET app.tenant = 'x'",
            "'); SELECT set_config('app.tenant', '', false); --",
            "TENANT-B",
            "tenant-b ",
            " tenant-b",
            "tenant\u2010b",
            "x" * 10_000,
            "tenant-a",
            "tenant-b",
            "tenant-c",
            "%",
            "_",
            "{tenant-b}",
            "urn:uuid:00000000-0000-0000-0000-000000000000",
        ]
    ),
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argument=HOSTILE)
def test_hostile_tenant_strings_never_reach_sql_or_leak(writer_url, two_tenants, argument):
    """Whatever is passed, it is a usage error before any SQL, an unknown tenant, or exactly
    one real tenant, and the session scoped to it sees that tenant's rows and no other; the
    string travels only as a bound parameter, never inside a statement."""
    statements: list[tuple[str, object]] = []
    engine = make_engine(writer_url, test_settings(writer_url))
    event.listen(
        engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, parameters, context, many: statements.append(
            (statement, parameters)
        ),
    )
    try:
        # the statements a lookup may send, learnt from two harmless lookups
        with engine.connect() as conn:
            for reference in (TenantArgument(slug="zz-reference"), TenantArgument(id=uuid.uuid4())):
                with pytest.raises(CommandFailed):
                    resolve_tenant(conn, reference)
        known = {statement for statement, _ in statements}
        statements.clear()
        export_for_argument(engine, argument, statements, known)
    finally:
        engine.dispose()


def export_for_argument(engine, argument: str, statements: list, known: set[str]) -> None:
    try:
        parsed = parse_tenant_argument(argument)
    except UsageError as exc:
        assert "invalid value for --tenant" in exc.message
        assert statements == []  # rejected before any SQL
        return
    assert (parsed.slug is None) != (parsed.id is None)
    with engine.begin() as conn:
        try:
            tenant = resolve_tenant(conn, parsed)
        except CommandFailed as exc:
            assert exc.message.startswith("unknown tenant")
            return
        finally:
            # the same statement text whatever the argument: it travelled as a parameter
            assert {statement for statement, _ in statements} <= known
        seen = {row[0] for row in conn.execute(text("SELECT tenant_id FROM kpi_history"))}
        assert seen == set()  # not scoped yet: nothing visible
        rows = list(stream_history(conn, tenant, ExportQuery(limit=100)))
        assert len(rows) == 1
        seen = {row[0] for row in conn.execute(text("SELECT tenant_id FROM kpi_history"))}
        assert seen == {tenant.id}
    assert tenant.slug in ("tenant-a", "tenant-b")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argument=HOSTILE)
def test_hostile_tenant_strings_through_the_cli(writer_url, argument):
    if "\x00" in argument:  # argv cannot carry NUL bytes
        argument = argument.replace("\x00", "")
    result = run_cli(["history", "export", f"--tenant={argument}", "--format", "csv"], writer_url)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert argument in ("tenant-a", "tenant-b")
        assert len(result.stdout.splitlines()) == 2
    else:
        assert result.exit_code in (1, 2), result.output
        assert result.stdout == ""
