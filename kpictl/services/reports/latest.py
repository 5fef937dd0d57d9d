"""`kpictl kpis`: the latest value of each KPI, what an operator looks at first.

"Latest" is, per (KPI, scope), the snapshot with the newest `period_end` among periods that are
over, then the newest `calculated_at` (docs/spec/pipeline.md §5). Only KPIs of the registry are shown (rows of other names, such
as the platform trigger's `run_success`, are ignored). At factory level a KPI that was never
computed is still listed, with every field but its name, level, unit and version empty; at
product level only products with snapshots appear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    column,
    func,
    literal,
    select,
    true,
    values,
)
from sqlalchemy.dialects.postgresql import UUID

from kpictl import kpis as registry
from kpictl.db.schema import kpi_snapshots, repositories
from kpictl.errors import CommandFailed, UsageError

KPI_LEVELS = ("factory", "product")


@dataclass(frozen=True)
class KpiValue:
    kpi_name: str
    level: str
    scope_id: uuid.UUID | None
    product: str | None  # owner/name of the repository (product level)
    value: Decimal | None  # None: no data in the period (or never computed)
    unit: str | None
    kpi_version: str
    period_start: datetime | None
    period_end: datetime | None
    calculated_at: datetime | None  # None: never computed

    @property
    def never_computed(self) -> bool:
        return self.calculated_at is None


def parse_product(product: str) -> tuple[str, str]:
    """'owner/name' -> ('owner', 'name'); UsageError when it is not of that shape."""
    owner, slash, name = product.strip().partition("/")
    if not slash or not owner or not name or "/" in name:
        raise UsageError(f"invalid --product {product!r}: use owner/name, e.g. acme/app")
    return owner, name


def resolve_level(level: str | None, product: str | None) -> str:
    """Default factory, or product when --product is given; --product needs product level."""
    if level is not None and level not in KPI_LEVELS:
        raise UsageError(f"invalid --level {level!r} (use factory or product)")
    if product is not None and level == "factory":
        raise UsageError(f"--product {product!r} needs --level product (it is not a factory KPI)")
    return level or ("product" if product is not None else "factory")


def product_ids(connection: Connection, owner: str, name: str) -> list[uuid.UUID]:
    """Repository ids of product `owner/name`; CommandFailed when there is none."""
    found = list(
        connection.execute(
            select(repositories.c.id).where(
                repositories.c.owner == owner, repositories.c.name == name
            )
        ).scalars()
    )
    if not found:
        raise CommandFailed(
            f"no such product {owner}/{name!s}: no repository with owner {owner!r} and "
            f"name {name!r}"
        )
    return found


def latest_values(
    connection: Connection, *, level: str, scope_ids: list[uuid.UUID] | None = None
) -> list[KpiValue]:
    """The latest snapshot per (KPI, scope) at `level`, in registry order (products by name)."""
    definitions = registry.at_level(level)
    snapshots = kpi_snapshots
    wanted = values(column("kpi_name", String), column("kpi_version", String), name="wanted").data(
        [(kpi.name, kpi.version) for kpi in definitions]
    )
    if level == "factory":
        scopes = select(literal(None, UUID(as_uuid=True)).label("scope_id")).subquery("scopes")
        same_scope: ColumnElement[bool] = snapshots.c.scope_id.is_(None)
    else:
        products = select(repositories.c.id.label("scope_id"))
        if scope_ids is not None:
            products = products.where(repositories.c.id.in_(scope_ids))
        scopes = products.subquery("scopes")
        same_scope = snapshots.c.scope_id == scopes.c.scope_id
    # Per (KPI, scope): the newest period_end among periods that are over (a backfill bucket of
    # the current day, ending tonight, was computed from part of its runs and must not hide the
    # last aggregate cycle), then the newest calculated_at. One backward walk of the key index
    # (level, kpi_name, kpi_version, period_end, ...) each, however many snapshots there are.
    latest = (
        select(
            snapshots.c.scope_id,
            snapshots.c.value,
            snapshots.c.unit,
            snapshots.c.kpi_version,
            snapshots.c.period_start,
            snapshots.c.period_end,
            snapshots.c.calculated_at,
        )
        .where(
            snapshots.c.level == level,
            snapshots.c.kpi_name == wanted.c.kpi_name,
            snapshots.c.kpi_version == wanted.c.kpi_version,
            same_scope,
            snapshots.c.period_end <= func.now(),
        )
        .order_by(snapshots.c.period_end.desc(), snapshots.c.calculated_at.desc())
        .limit(1)
        .lateral("latest")
    )
    product = (repositories.c.owner + "/" + repositories.c.name).label("product")
    statement = select(
        wanted.c.kpi_name,
        latest.c.scope_id,
        product,
        latest.c.value,
        latest.c.unit,
        latest.c.kpi_version,
        latest.c.period_start,
        latest.c.period_end,
        latest.c.calculated_at,
    ).select_from(
        wanted.join(scopes, true())
        .join(latest, true())
        .outerjoin(repositories, repositories.c.id == latest.c.scope_id)
    )
    found = [KpiValue(level=level, **row._mapping) for row in connection.execute(statement)]
    order = {kpi.name: index for index, kpi in enumerate(definitions)}
    found.sort(key=lambda item: (item.product or "", str(item.scope_id), order[item.kpi_name]))
    if level != "factory":
        return found
    # A factory KPI never computed is listed too, so that its absence is visible.
    computed = {item.kpi_name for item in found}
    missing = [
        KpiValue(kpi.name, level, None, None, None, kpi.unit, kpi.version, None, None, None)
        for kpi in definitions
        if kpi.name not in computed
    ]
    return sorted(found + missing, key=lambda item: order[item.kpi_name])
