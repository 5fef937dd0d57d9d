"""`kpictl report`: what the HTML report shows, read in one transaction.

- the factory KPIs: the latest value of each and its values over the range (`trends.history`,
  one query per KPI, at most CHART_POINTS points each);
- the products: the latest value of each product KPI and the same window before it, as in the
  `kpis` table (`trends.trends`, one query for all);
- freshness of the factory KPIs, judged by the thresholds the caller passes;
- the last jobs of the range, failed ones first;
- with a tenant: its weekly history rows in the range (row-level security applies as for
  `history export`: the same tenant resolution and grant check).

Only the factory and product levels are read: their snapshots are a few per period, however
many runs there are (docs/PERFORMANCE.md, "kpictl report").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from kpictl import kpis as registry
from kpictl.db.schema import kpi_aggregation_jobs
from kpictl.errors import UsageError
from kpictl.services.history.export import ExportQuery, ExportRow, stream_history
from kpictl.services.history.tenants import Tenant
from kpictl.services.jobs.listing import LIST_COLUMNS, newest_first
from kpictl.services.reports.freshness import FreshnessReport, check_freshness
from kpictl.services.reports.latest import KpiValue, latest_values
from kpictl.services.reports.trends import Key, Point, history, trends

CHART_POINTS = 120  # per factory chart: more snapshots than this are averaged in groups
JOBS_SHOWN = 20
MAX_DAYS = 3660


@dataclass(frozen=True)
class Thresholds:
    """Freshness thresholds in seconds: the default pair and per-KPI pairs."""

    warn_after: float
    error_after: float
    per_kpi: Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class TenantHistory:
    tenant: Tenant
    rows: list[ExportRow]  # weekly, oldest first


@dataclass(frozen=True)
class Report:
    generated_at: datetime  # the database's now()
    since: datetime
    days: int
    factory: list[KpiValue]
    factory_series: dict[str, list[Point]]  # per factory KPI, oldest first
    factory_trends: dict[Key, list[Decimal | None]]  # the latest value's window moved back
    products: list[KpiValue]
    product_trends: dict[Key, list[Decimal | None]]
    freshness: FreshnessReport
    jobs: list[dict[str, Any]]  # LIST_COLUMNS, failed first, then newest first
    tenant: TenantHistory | None


def check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"invalid --days {days}: use 1 to {MAX_DAYS}")


def gather(
    connection: Connection, *, days: int, thresholds: Thresholds, tenant: Tenant | None = None
) -> Report:
    """Everything the report shows over the last `days` days, as of the database's now()."""
    check_days(days)
    now = connection.execute(select(func.now())).scalar_one()
    since = now - timedelta(days=days)
    factory = latest_values(connection, level="factory")
    products = latest_values(connection, level="product")
    return Report(
        generated_at=now,
        since=since,
        days=days,
        factory=factory,
        factory_series={
            kpi.name: history(
                connection, kpi.name, level="factory", since=since, points=CHART_POINTS
            )
            for kpi in registry.at_level("factory")
        },
        factory_trends=trends(connection, factory),
        products=products,
        product_trends=trends(connection, products),
        freshness=check_freshness(
            connection,
            list(registry.at_level("factory")),
            level="factory",
            warn_after_seconds=thresholds.warn_after,
            error_after_seconds=thresholds.error_after,
            per_kpi=thresholds.per_kpi,
        ),
        jobs=last_jobs(connection, since),
        tenant=_tenant_history(connection, tenant, since) if tenant else None,
    )


def last_jobs(connection: Connection, since: datetime) -> list[dict[str, Any]]:
    """The JOBS_SHOWN newest jobs started (or created) since `since`, the failed ones first."""
    jobs = kpi_aggregation_jobs
    query = select(*(jobs.c[name] for name in LIST_COLUMNS)).where(
        func.coalesce(jobs.c.started_at, jobs.c.created_at) >= since
    )
    rows = [
        dict(row) for row in connection.execute(newest_first(query).limit(JOBS_SHOWN)).mappings()
    ]
    return sorted(rows, key=lambda row: row["status"] != "failed")  # stable: newest first within


def _tenant_history(connection: Connection, tenant: Tenant, since: datetime) -> TenantHistory:
    query = ExportQuery(limit=None, since=since.date())
    return TenantHistory(tenant, list(stream_history(connection, tenant, query)))
