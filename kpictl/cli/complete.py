"""Shell completion of option values that are not a fixed choice: KPI names (from the
registry), IANA time zones, and tenant slugs (from the database).

A completion runs on every Tab: it must be fast and silent. The tenant list is read only from a
database that is configured (a URL, a URL file or a credential; never the embedded server,
which would be started), with a short connect timeout, and is empty when anything fails.
"""

from __future__ import annotations

from typing import Any

TENANT_LIMIT = 100
CONNECT_TIMEOUT_SECONDS = 2


def kpi_names(incomplete: str) -> list[str]:
    from kpictl import kpis

    return [name for name in kpis.names() if name.startswith(incomplete)]


def time_zones(incomplete: str) -> list[str]:
    from zoneinfo import available_timezones

    return sorted(zone for zone in available_timezones() if zone.startswith(incomplete))


def tenants(ctx: Any, incomplete: str) -> list[str]:
    """Slugs of the configured database's tenants that start with `incomplete`; [] when there
    is no database configured or it cannot answer quickly."""
    try:
        return _tenant_slugs(ctx.params.get("database_url"), incomplete)
    except Exception:  # a completion never prints an error into the shell
        return []


def _tenant_slugs(flag_url: str | None, incomplete: str) -> list[str]:
    import psycopg

    from kpictl.settings import settings_from_environment

    settings = settings_from_environment(flag_url=flag_url, command="kpictl completion")
    if settings.target.url is None:  # the embedded server, or nothing configured
        return []
    url = settings.target.url.replace("postgresql+psycopg://", "postgresql://", 1)
    query = "SELECT slug FROM tenants WHERE slug LIKE %s ORDER BY slug LIMIT %s"
    pattern = incomplete.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as connection:
        connection.execute("SET statement_timeout = '2s'")
        rows = connection.execute(query, (pattern, TENANT_LIMIT)).fetchall()
    return [row[0] for row in rows]
