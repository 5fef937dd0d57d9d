"""The per-tenant KPI history (docs/spec/history.md): what `fill` and `export` share.

- `parse_tenant_argument` checks a `--tenant` value before any SQL: a UUID, or a possible slug
  (printable, 1-200 characters, no surrounding blanks); anything else is a usage error naming
  the value. A possible slug only ever travels as a bound parameter.
- `resolve_tenant` looks the tenant up with bound parameters; not found is "unknown tenant".
- `set_tenant` sets `app.tenant` with `set_config(..., true)`: local to the caller's transaction,
  which is the only transaction allowed to read or write that tenant's `kpi_history` rows.

Filling lives in `history_fill`, exporting in `history_export`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, select, text

from kpictl.db.schema import TENANT_SETTING, tenants
from kpictl.errors import CommandFailed, KpictlError, UsageError, shown

# `tenants.slug` is free text: any existing slug must be usable. What cannot be a slug (empty,
# blank-padded, control characters, absurdly long) is refused before any SQL.
MAX_SLUG_LENGTH = 200
# Canonical hyphenated UUIDs only (any case): no braces, no urn: prefix, no bare 32 hex digits.
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    slug: str


@dataclass(frozen=True)
class TenantArgument:
    """A validated `--tenant` value: exactly one of `id` and `slug` is set."""

    id: uuid.UUID | None = None
    slug: str | None = None


def parse_tenant_argument(value: str, option: str = "--tenant") -> TenantArgument:
    """`value` as a UUID or a slug, or a UsageError naming it (nothing else reaches SQL)."""
    if UUID_PATTERN.fullmatch(value):
        return TenantArgument(id=uuid.UUID(value))
    if 0 < len(value) <= MAX_SLUG_LENGTH and value.isprintable() and value == value.strip():
        return TenantArgument(slug=value)
    raise UsageError(
        f"invalid value for {option}: {shown(value)} is neither a UUID nor a tenant slug "
        f"(printable, 1-{MAX_SLUG_LENGTH} characters, no leading or trailing blanks)"
    )


def resolve_tenant(
    conn: Connection, argument: TenantArgument, *, unknown: type[KpictlError] = CommandFailed
) -> Tenant:
    """The tenant named by a validated argument, or `unknown`("unknown tenant"): exit 1 for
    export (docs/spec/history.md §3), a usage error for fill ("a UUID or an existing slug", §2)."""
    query = select(tenants.c.id, tenants.c.slug)
    if argument.id is not None:
        query = query.where(tenants.c.id == argument.id)
        named = str(argument.id)
    else:
        query = query.where(tenants.c.slug == argument.slug)
        named = str(argument.slug)
    row = conn.execute(query).first()
    if row is None:
        raise unknown(
            f"unknown tenant: {named}",
            hint="pass the id or slug of a row in the tenants table",
        )
    return Tenant(id=row.id, slug=row.slug)


def set_tenant(conn: Connection, tenant_id: uuid.UUID) -> None:
    """Scope the current transaction to one tenant (row-level security of docs/spec/history.md §4)."""
    conn.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": TENANT_SETTING, "value": str(tenant_id)},
    )
