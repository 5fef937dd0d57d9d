"""`kpictl history grant` / `revoke` (revision 0006): tenant access decided by the connected
role, which no `SET` can widen. Every claim is checked through real LOGIN roles that are
neither the owner nor superusers (see tests/cli/test_history_security.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from kpictl.errors import UsageError
from kpictl.services.history import grants
from kpictl.services.history.tenants import Tenant, TenantArgument
from tests import factories as f
from tests.conftest import libpq, run_cli
from tests.helpers import login_role

W = date(2026, 1, 5)


@pytest.fixture
def three_tenants(db_url, engine):
    """Tenants a, b and c with one history row each (written by the fill, as the owner)."""
    with engine.begin() as conn:
        ids = {name: f.tenant(conn, f"tenant-{name}") for name in "abc"}
        for value, tenant_id in enumerate(ids.values(), start=1):
            f.avi_report(conn, tenant_id, W, aiv_pct=value * 11)
    assert run_cli(["history", "fill"], db_url).exit_code == 0
    return ids


@pytest.fixture
def reader_url(db_url, three_tenants) -> Iterator[str]:
    """A dashboard role granted as docs/SECURITY.md says: SELECT on tenants and kpi_history."""
    with login_role(db_url, "SELECT", jobs=False) as url:
        yield url


def role_of(url: str) -> str:
    return make_url(url).username


def admin(db_url: str) -> psycopg.Connection:
    return psycopg.connect(libpq(db_url), autocommit=True)


@contextmanager
def extra_role(db_url: str, *, login: bool = False) -> Iterator[str]:
    role = f"kpictl_test_{uuid.uuid4().hex[:10]}"
    with admin(db_url) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(
                sql.Identifier(role)
            )
        )
    try:
        yield role
    finally:
        with admin(db_url) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def seen(conn: psycopg.Connection, statements: tuple[str, ...] = ()) -> set[uuid.UUID]:
    """The tenant ids of kpi_history visible after `statements`, in one transaction."""
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
        return {row[0] for row in conn.execute("SELECT tenant_id FROM kpi_history")}


def spoofs(tenant_id: uuid.UUID) -> list[tuple[str, ...]]:
    """Every way a session might try to name another tenant."""
    return [
        (f"SET LOCAL app.tenant = '{tenant_id}'",),
        (f"SET app.tenant = '{tenant_id}'",),
        (f"SELECT set_config('app.tenant', '{tenant_id}', false)",),
        (f"SELECT set_config('app.tenant', '{tenant_id}', true)",),
        ("SET row_security = off",),
    ]


def grant(db_url: str, role: str, *tenants: str):
    args = ["history", "grant", "--role", role]
    for tenant in tenants:
        args += ["--tenant", tenant]
    return run_cli(args, db_url)


def revoke(db_url: str, role: str, tenant: str):
    return run_cli(["history", "revoke", "--role", role, "--tenant", tenant], db_url)


def test_a_select_role_cannot_spoof_app_tenant(reader_url, three_tenants):
    """The hole of issue 12: SELECT as SECURITY.md granted it plus SET app.tenant read any
    tenant. Now a role that is not a service role sees nothing without a grant."""
    with psycopg.connect(libpq(reader_url)) as conn:
        assert seen(conn) == set()
        for statements in spoofs(three_tenants["a"])[:-1]:
            assert seen(conn, statements) == set()
            conn.execute("RESET app.tenant")
            conn.commit()


def test_granted_role_sees_its_tenant_and_no_setting_widens_it(db_url, reader_url, three_tenants):
    role = role_of(reader_url)
    result = grant(db_url, role, "tenant-a")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"granted: role {role} reads tenant tenant-a ({three_tenants['a']})\n"
    with psycopg.connect(libpq(reader_url)) as conn:
        assert seen(conn) == {three_tenants["a"]}  # no setting needed
        for other in ("b", "c"):
            for statements in spoofs(three_tenants[other]):
                try:
                    assert seen(conn, statements) == {three_tenants["a"]}, statements
                except psycopg.errors.InsufficientPrivilege:  # row_security = off: refused
                    assert statements == ("SET row_security = off",)
                conn.execute("RESET app.tenant")
                conn.execute("RESET row_security")
                conn.commit()
        # the grants table shows the role its own rows only, and it cannot add any
        with conn.transaction():
            rows = conn.execute("SELECT role_name, tenant_id FROM kpi_history_grants").fetchall()
        assert rows == [(role, three_tenants["a"])]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO kpi_history_grants (role_name, tenant_id, granted_by) "
                "VALUES (current_user, %s, 'me')",
                (three_tenants["b"],),
            )
        conn.rollback()
    # history export as the role: its tenant yes, another one is refused (not an empty file)
    own = run_cli(["history", "export", "--tenant", "tenant-a", "--format", "csv"], reader_url)
    assert own.exit_code == 0, own.output
    assert own.stdout.splitlines()[1].startswith("2026-01-05,11.00,")
    other = run_cli(["history", "export", "--tenant", "tenant-b"], reader_url)
    assert other.exit_code == 77, other.output
    assert "may not read tenant tenant-b" in other.stderr
    assert f"kpictl history grant --tenant tenant-b --role {role}" in other.stderr


def test_set_role_follows_the_current_role(db_url, reader_url, three_tenants):
    """The policy reads current_user: grants of a role whose privileges the reader inherits
    count; SET ROLE to it narrows to that role's tenants; a role it is not a member of is out
    of reach (PostgreSQL refuses the SET ROLE)."""
    reader = role_of(reader_url)
    with extra_role(db_url) as group, extra_role(db_url) as stranger:
        with admin(db_url) as conn:
            conn.execute(sql.SQL("GRANT {} TO {}").format(*map(sql.Identifier, (group, reader))))
            conn.execute(
                sql.SQL("GRANT SELECT ON tenants, kpi_history TO {}").format(sql.Identifier(group))
            )
        assert grant(db_url, reader, "tenant-a").exit_code == 0
        assert grant(db_url, group, "tenant-b").exit_code == 0
        assert grant(db_url, stranger, "tenant-c").exit_code == 0
        a, b = three_tenants["a"], three_tenants["b"]
        with psycopg.connect(libpq(reader_url)) as conn:
            assert seen(conn) == {a, b}  # its own grant and the inherited one
            assert seen(conn, (f'SET LOCAL ROLE "{group}"',)) == {b}
            assert seen(conn, (f'SET LOCAL ROLE "{group}"', *spoofs(a)[0])) == {b}
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                seen(conn, (f'SET LOCAL ROLE "{stranger}"',))
            conn.rollback()
            assert seen(conn) == {a, b}


def test_revoke_takes_access_away(db_url, reader_url, three_tenants):
    role = role_of(reader_url)
    assert grant(db_url, role, "tenant-a", "tenant-b").exit_code == 0
    with psycopg.connect(libpq(reader_url), autocommit=True) as conn:
        assert seen(conn) == {three_tenants["a"], three_tenants["b"]}
        result = revoke(db_url, role, "tenant-a")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"revoked: role {role} no longer reads tenant tenant-a")
        assert seen(conn) == {three_tenants["b"]}
        again = revoke(db_url, role, "tenant-a")
        assert again.exit_code == 0
        assert again.stdout.startswith(f"not granted: role {role} had no grant of tenant tenant-a")
        assert revoke(db_url, role, "tenant-b").exit_code == 0
        assert seen(conn) == set()
        assert seen(conn, spoofs(three_tenants["b"])[1]) == set()


def test_grant_is_idempotent(db_url, reader_url, engine, three_tenants):
    role = role_of(reader_url)
    assert grant(db_url, role, "tenant-a").stdout.startswith("granted:")
    again = grant(db_url, role, "tenant-a", str(three_tenants["a"]))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("already granted:")
    assert len(again.stdout.splitlines()) == 1  # the same tenant twice is one tenant
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM kpi_history_grants").scalar()
    assert count == 1


def test_unknown_tenant_or_role_is_a_usage_error(db_url, reader_url, engine, three_tenants):
    role = role_of(reader_url)
    unknown_tenant = grant(db_url, role, "tenant-a", "no-such-tenant")
    assert unknown_tenant.exit_code == 2, unknown_tenant.output
    assert "unknown tenant: 'no-such-tenant'" in unknown_tenant.stderr
    assert "tenant-a, tenant-b, tenant-c" in unknown_tenant.stderr  # the valid input
    unknown_role = grant(db_url, "no_such_role_x", "tenant-a")
    assert unknown_role.exit_code == 2, unknown_role.output
    assert "unknown role: 'no_such_role_x'" in unknown_role.stderr
    assert "existing role" in unknown_role.stderr
    for bad in ("", " padded", "x" * 64):
        assert grant(db_url, bad, "tenant-a").exit_code == 2
    assert grant(db_url, "pg_read_all_data", "tenant-a").exit_code == 2
    assert revoke(db_url, "no_such_role_x", "tenant-a").exit_code == 2
    assert "Traceback" not in unknown_tenant.output + unknown_role.output
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM kpi_history_grants").scalar()
    assert count == 0  # the valid tenant of the refused command was not granted either


def test_a_dropped_role_breaks_no_reader_and_can_be_revoked(db_url, reader_url, three_tenants):
    with extra_role(db_url) as gone:
        assert grant(db_url, gone, "tenant-b").exit_code == 0
    assert grant(db_url, role_of(reader_url), "tenant-a").exit_code == 0
    with psycopg.connect(libpq(reader_url)) as conn:
        assert seen(conn) == {three_tenants["a"]}
    result = revoke(db_url, gone, "tenant-b")
    assert result.exit_code == 0 and result.stdout.startswith("revoked:")


def test_service_role_keeps_app_tenant(db_url, three_tenants):
    """kpictl's own fill/export role (INSERT on kpi_history) still works by app.tenant."""
    with login_role(db_url, "SELECT, INSERT, UPDATE") as writer_url:
        with psycopg.connect(libpq(writer_url)) as conn:
            assert seen(conn) == set()
            assert seen(conn, spoofs(three_tenants["c"])[0]) == {three_tenants["c"]}
        result = run_cli(["history", "export", "--tenant", "tenant-b"], writer_url)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1:] == ["2026-01-05,22.00,,,,100.00,"]


def test_service_functions(engine, reader_url, three_tenants):
    role = role_of(reader_url)
    with engine.begin() as conn:
        described, changes = grants.grant(conn, [TenantArgument(slug="tenant-c")], role)
        assert described.exists and described.can_select and not described.service
        assert [(c.tenant.slug, c.changed) for c in changes] == [("tenant-c", True)]
        with pytest.raises(UsageError, match="unknown tenant"):
            grants.grant(conn, [TenantArgument(id=uuid.uuid4())], role)
    with engine.begin() as conn:
        assert grants.can_read(conn, Tenant(three_tenants["a"], "tenant-a"))  # the owner
        changes = grants.revoke(conn, [TenantArgument(slug="tenant-c")], role)
        assert [c.changed for c in changes] == [True]
        assert [
            c.changed for c in grants.revoke(conn, [TenantArgument(slug="tenant-c")], role)
        ] == [False]
