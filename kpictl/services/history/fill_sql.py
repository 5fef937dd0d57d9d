"""The SQL of `kpictl history fill` (docs/spec/history.md §2), static text with bound
parameters: the computation of a tenant's rows (every value rounded by PostgreSQL, NaN and
infinities refused), the upsert into kpi_history and the staging table the chunked fill uses.
How and when it runs (chunks, row-level security, retries, the job) is `services/history/fill.py`.
"""

from __future__ import annotations

from datetime import date

from kpictl.services.history.export import METRICS

VALUE_COLUMNS = (*METRICS, "vli_fallback")  # the export's metrics, and the fallback flag
# A JSON string counts as a probability when it holds a plain decimal number.
DECIMAL_REGEX = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"


def finite(expression: str, name: str) -> str:
    """`round(expression::numeric, 2)`, or an error naming `name` for NaN and infinities: a bad
    value fails its tenant (INTERNAL_ERROR) instead of writing NaN. The error is raised by a cast
    that depends on the row, so the planner cannot fold it into an unconditional failure."""
    value = f"CAST({expression} AS numeric)"
    return (
        f"CASE WHEN {value} IN ('NaN', 'Infinity', '-Infinity') "
        f"THEN CAST('bad value: {name} is ' || {value} AS numeric) ELSE round({value}, 2) END"
    )


def compute_sql(*, backfill: bool, since: date | None, until: date | None) -> str:
    """The rows of docs/spec/history.md §2 for the tenants in `:tenant_ids` (a uuid[] parameter).

    Latest mode picks one report per tenant; backfill mode one per tenant and week, with
    `:since` / `:until` (bound, inclusive) on the report's `as_of`. Static SQL only; every value
    is a bound parameter.
    """
    partition = "r.tenant_id, r.as_of" if backfill else "r.tenant_id"
    filters = ["r.tenant_id = ANY(CAST(:tenant_ids AS uuid[]))"]
    if since is not None:
        filters.append("r.as_of >= CAST(:since AS date)")
    if until is not None:
        filters.append("r.as_of <= CAST(:until AS date)")
    return f"""
WITH chosen AS (
    -- the latest report wins: greatest as_of, then created_at, then id
    SELECT DISTINCT ON ({partition})
           r.tenant_id, r.as_of, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point,
           CAST(r.clarity_json AS jsonb) -> 'hrp' AS hrp
    FROM avi_reports AS r
    WHERE {" AND ".join(filters)}
    ORDER BY {partition}, r.as_of DESC, r.created_at DESC NULLS LAST, r.id DESC NULLS LAST
),
page_latest AS (
    -- each vehicle page's latest audit strictly before the end of week W (W + 7 days, 00:00 UTC);
    -- two audits of a page at the same instant: the lower integrity counts (conservative)
    SELECT DISTINCT ON (c.tenant_id, c.as_of, a.vdp_id) c.tenant_id, c.as_of, a.integrity_pct
    FROM chosen AS c
    JOIN vdp_vli_audit AS a
      ON a.tenant_id = c.tenant_id
     AND a.as_of < (CAST(c.as_of + 7 AS timestamp) AT TIME ZONE 'UTC')
    ORDER BY c.tenant_id, c.as_of, a.vdp_id, a.as_of DESC, a.integrity_pct ASC NULLS LAST
),
vli AS (
    SELECT tenant_id, as_of, {finite("avg(integrity_pct)", "vli_integrity_pct")} AS integrity_pct
    FROM page_latest
    GROUP BY tenant_id, as_of
)
SELECT c.tenant_id,
       c.as_of,
       {finite("c.aiv_pct", "aiv_pct")} AS aiv_pct,
       {finite("c.ati_pct", "ati_pct")} AS ati_pct,
       {finite("c.crs_pct", "crs_pct")} AS crs_pct,
       {finite("c.elasticity_usd_per_point", "elasticity_usd_per_point")} AS elasticity_usd_per_point,
       CASE WHEN v.tenant_id IS NULL THEN 100.00 ELSE v.integrity_pct END AS vli_integrity_pct,
       CASE WHEN h.probability BETWEEN 0 AND 1 THEN round(100 * h.probability, 2) END AS hrp_pct,
       v.tenant_id IS NULL AS vli_fallback
FROM chosen AS c
LEFT JOIN vli AS v ON v.tenant_id = c.tenant_id AND v.as_of = c.as_of
CROSS JOIN LATERAL (
    SELECT CASE jsonb_typeof(c.hrp)
               WHEN 'number' THEN CAST(c.hrp AS numeric)
               WHEN 'string' THEN CASE WHEN (c.hrp #>> '{{}}') ~ '{DECIMAL_REGEX}'
                                       THEN CAST(btrim(c.hrp #>> '{{}}') AS numeric) END
           END AS probability
) AS h
"""


_COLUMN_LIST = ", ".join(VALUE_COLUMNS)
_UPDATE_LIST = ", ".join(f"{column} = EXCLUDED.{column}" for column in VALUE_COLUMNS)


def upsert_sql(source: str) -> str:
    """Upsert the rows of `source` (static SQL: a query or the staging table) into kpi_history."""
    return f"""
INSERT INTO kpi_history (tenant_id, as_of, {_COLUMN_LIST})
SELECT tenant_id, as_of, {_COLUMN_LIST} FROM {source}
ON CONFLICT (tenant_id, as_of) DO UPDATE SET {_UPDATE_LIST}, updated_at = now()
"""


STAGING_TABLE = "kpictl_history_staged"
CREATE_STAGING = f"""
CREATE TEMPORARY TABLE {STAGING_TABLE} (
    tenant_id uuid, as_of date, aiv_pct numeric, ati_pct numeric, crs_pct numeric,
    elasticity_usd_per_point numeric, vli_integrity_pct numeric, hrp_pct numeric,
    vli_fallback boolean
) ON COMMIT DROP
"""
# psycopg placeholders: these two run on the driver connection, in a pipeline.
SET_TENANT_PG = "SELECT set_config(%s, %s, true)"
UPSERT_STAGED_PG = upsert_sql(f"{STAGING_TABLE} WHERE tenant_id = %s")
