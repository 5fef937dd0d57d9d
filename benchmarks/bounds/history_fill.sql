-- Lower bound for `kpictl history fill` (all tenants, latest report each): one
-- INSERT ... SELECT ... ON CONFLICT, run by a superuser (no row-level security to satisfy).
-- The latest report per tenant, the latest audit per page before the week's end, their mean.
INSERT INTO kpi_history AS h (tenant_id, as_of, aiv_pct, ati_pct, crs_pct,
                              elasticity_usd_per_point, vli_integrity_pct, hrp_pct, vli_fallback)
WITH latest_report AS (
  SELECT DISTINCT ON (tenant_id) *
  FROM avi_reports
  ORDER BY tenant_id, as_of DESC, created_at DESC, id DESC
),
latest_audit AS (
  SELECT DISTINCT ON (a.tenant_id, a.vdp_id) a.tenant_id, a.integrity_pct
  FROM vdp_vli_audit a
  JOIN latest_report r ON r.tenant_id = a.tenant_id
   AND a.as_of < (r.as_of + 7)::timestamp AT TIME ZONE 'UTC'
  ORDER BY a.tenant_id, a.vdp_id, a.as_of DESC
),
vli AS (
  SELECT tenant_id, avg(integrity_pct) AS value FROM latest_audit GROUP BY tenant_id
)
SELECT r.tenant_id, r.as_of, round(r.aiv_pct, 2), round(r.ati_pct, 2), round(r.crs_pct, 2),
       round(r.elasticity_usd_per_point, 2), coalesce(round(v.value, 2), 100.00),
       CASE WHEN jsonb_typeof(r.clarity_json -> 'hrp') = 'number'
                 AND (r.clarity_json ->> 'hrp')::numeric BETWEEN 0 AND 1
            THEN round(100 * (r.clarity_json ->> 'hrp')::numeric, 2) END,
       v.value IS NULL
FROM latest_report r
LEFT JOIN vli v ON v.tenant_id = r.tenant_id
ON CONFLICT (tenant_id, as_of) DO UPDATE
SET aiv_pct = EXCLUDED.aiv_pct, ati_pct = EXCLUDED.ati_pct, crs_pct = EXCLUDED.crs_pct,
    elasticity_usd_per_point = EXCLUDED.elasticity_usd_per_point,
    vli_integrity_pct = EXCLUDED.vli_integrity_pct, hrp_pct = EXCLUDED.hrp_pct,
    vli_fallback = EXCLUDED.vli_fallback, updated_at = now();
