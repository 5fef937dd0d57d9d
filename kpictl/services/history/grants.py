"""Which database roles may read which tenants' history (revision 0006, docs/SECURITY.md).

`kpi_history_grants (role_name, tenant_id)` is read by the policy `kpi_history_tenant_grants`:
a role sees the rows of the tenants granted to it, or to a role whose privileges it inherits,
whatever it sets. `grant` and `revoke` write that table (as its owner, the role that ran
`kpictl migrate`); `can_read` tells `history export` whether the current role may read a tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from kpictl.db.schema import kpi_history_grants, tenants
from kpictl.errors import PermissionDenied, UsageError, shown
from kpictl.services.history.tenants import Tenant, TenantArgument

MAX_ROLE_LENGTH = 63  # NAMEDATALEN - 1
SHOWN_SLUGS = 5


@dataclass(frozen=True)
class Role:
    name: str
    exists: bool
    bypasses_rls: bool = False  # superuser or BYPASSRLS: every row, whatever the grants
    can_select: bool = False  # SELECT on tenants and kpi_history (directly or inherited)
    service: bool = False  # INSERT on kpi_history: reads any tenant through app.tenant


@dataclass(frozen=True)
class GrantChange:
    tenant: Tenant
    changed: bool  # False: was already granted (grant) or was not granted (revoke)


def parse_role_argument(value: str) -> str:
    """A `--role` value that can be a role name, or a UsageError naming it."""
    if 0 < len(value) <= MAX_ROLE_LENGTH and value.isprintable() and value == value.strip():
        return value
    raise UsageError(
        f"invalid value for --role: {shown(value)} is not a role name "
        f"(printable, 1-{MAX_ROLE_LENGTH} characters, no leading or trailing blanks)"
    )


def describe_role(conn: Connection, name: str) -> Role:
    row = conn.execute(
        text(
            "SELECT r.rolsuper OR r.rolbypassrls AS bypasses, "
            "has_table_privilege(r.oid, 'tenants', 'SELECT') "
            "AND has_table_privilege(r.oid, 'kpi_history', 'SELECT') AS can_select, "
            "has_table_privilege(r.oid, 'kpi_history', 'INSERT') AS service "
            "FROM pg_roles r WHERE r.rolname = :name"
        ),
        {"name": name},
    ).first()
    if row is None:
        return Role(name, exists=False)
    return Role(name, True, row.bypasses, row.can_select, row.service)


def _known_role(conn: Connection, name: str) -> Role:
    role = describe_role(conn, name)
    if not role.exists:
        raise UsageError(
            f"unknown role: {shown(name)}; --role takes an existing role of this server "
            "(CREATE ROLE it first; `SELECT rolname FROM pg_roles` lists them)"
        )
    if name.startswith("pg_"):
        raise UsageError(
            f"invalid value for --role: {shown(name)} is a predefined role; grant to a role "
            "of your own (e.g. kpi_dashboard)"
        )
    return role


def resolve_tenants(conn: Connection, arguments: list[TenantArgument]) -> list[Tenant]:
    """The tenants named by `--tenant` values, or a UsageError naming the unknown one and what
    would be valid."""
    found = []
    for argument in arguments:
        column, value = (
            (tenants.c.id, argument.id)
            if argument.id is not None
            else (tenants.c.slug, argument.slug)
        )
        row = conn.execute(select(tenants.c.id, tenants.c.slug).where(column == value)).first()
        if row is None:
            raise UsageError(f"unknown tenant: {shown(str(value))}; {_valid_tenants(conn)}")
        found.append(Tenant(id=row.id, slug=row.slug))
    return list(dict.fromkeys(found))


def _valid_tenants(conn: Connection) -> str:
    count = conn.execute(select(func.count()).select_from(tenants)).scalar_one()
    if count == 0:
        return "the tenants table is empty (`kpictl history fill` reads tenants from it)"
    slugs = conn.scalars(select(tenants.c.slug).order_by(tenants.c.slug).limit(SHOWN_SLUGS)).all()
    more = f", ... ({count} tenants)" if count > len(slugs) else ""
    return f"--tenant takes a tenant's UUID or slug: {', '.join(slugs)}{more}"


def grant(
    conn: Connection, arguments: list[TenantArgument], role_name: str
) -> tuple[Role, list[GrantChange]]:
    """Let `role_name` read the rows of these tenants; granting twice changes nothing."""
    role = _known_role(conn, role_name)
    changes = []
    for tenant in resolve_tenants(conn, arguments):
        inserted = conn.execute(
            insert(kpi_history_grants)
            .values(role_name=role.name, tenant_id=tenant.id, granted_by=func.current_user())
            .on_conflict_do_nothing()
            .returning(kpi_history_grants.c.tenant_id)
        ).first()
        changes.append(GrantChange(tenant, inserted is not None))
    return role, changes


def revoke(conn: Connection, arguments: list[TenantArgument], role_name: str) -> list[GrantChange]:
    """Take these tenants away from `role_name`; revoking what was not granted is a no-op.

    A role dropped since its grant can still be revoked (its rows match nobody, but stay until
    revoked: a new role of the same name would inherit them)."""
    has_rows = conn.execute(
        select(func.count()).where(kpi_history_grants.c.role_name == role_name)
    ).scalar_one()
    if not has_rows:
        _known_role(conn, role_name)
    changes = []
    for tenant in resolve_tenants(conn, arguments):
        deleted = conn.execute(
            delete(kpi_history_grants)
            .where(
                kpi_history_grants.c.role_name == role_name,
                kpi_history_grants.c.tenant_id == tenant.id,
            )
            .returning(kpi_history_grants.c.tenant_id)
        ).first()
        changes.append(GrantChange(tenant, deleted is not None))
    return changes


def can_read(conn: Connection, tenant: Tenant) -> bool:
    """May the current role read `tenant`'s history rows: a service role (INSERT on
    kpi_history, reads through app.tenant), a role that bypasses RLS, or a granted one."""
    trusted = conn.execute(
        text(
            "SELECT has_table_privilege('kpi_history', 'INSERT') OR rolsuper OR rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
    ).scalar()
    if trusted or conn.execute(text("SELECT to_regclass('kpi_history_grants')")).scalar() is None:
        return True
    granted = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM kpi_history_grants g "
            "JOIN pg_roles r ON r.rolname = g.role_name "
            "WHERE g.tenant_id = :tenant AND pg_has_role(current_user, r.oid, 'USAGE'))"
        ),
        {"tenant": tenant.id},
    ).scalar_one()
    return bool(granted)


def check_can_read(conn: Connection, tenant: Tenant) -> None:
    """A role that may not read the tenant would get an empty history: PermissionDenied (77)
    that says so instead, with the grant that would let it read."""
    if can_read(conn, tenant):
        return
    role = conn.execute(text("SELECT current_user")).scalar()
    raise PermissionDenied(
        f"role {role} may not read tenant {tenant.slug}'s history: it has no grant of it "
        "and is not a kpictl service role",
        hint=f"as the owner of kpictl's tables: kpictl history grant --tenant {tenant.slug} "
        f"--role {role}",
    )
