"""A realistic, deterministic sample factory: source rows for demos, tests and benchmarks.

`generate(conn, seed=42, ...)` fills the platform's source tables (repositories,
workflow_executions, agent_runs, mcp_tool_calls, verdict_outcomes, avi_reports, vdp_vli_audit)
and kpictl's `tenants` with data shaped like a busy code factory: every run status, a few runs
without a repository or with `completed_at < started_at`, NULL token parts, tool errors, all four
verdict outcomes, duplicate AVI reports in a week, `hrp` as number, string, junk or absent.

Rows are produced set-based inside PostgreSQL (`INSERT ... SELECT ... FROM generate_series`), with
pseudo-random values drawn from `md5(seed || '/' || tag || '/' || index)`, so a million runs load
in well under a minute and the same seed and `now` give the same rows on any server. Ids derive
from the seed, the table and the row index, so re-running `generate` inserts nothing new
(ON CONFLICT DO NOTHING, or NOT EXISTS on the natural key for the tables with bigint identity
ids).

Sample ids are UUIDs of version 8 (RFC 9562 "custom") that start with `SAMPLE_PREFIX`: no
`gen_random_uuid()` value (version 4) can ever look like one, which is how `reset` finds exactly
the sample's rows and nothing else. Two seeds get disjoint ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

SAMPLE_PREFIX = "5a3b1e00"  # first 8 hex digits of every sample uuid
STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
OUTCOMES = ("accepted", "overridden", "escalated", "unknown")
PRODUCT_NAMES = (
    "checkout",
    "payments",
    "search",
    "catalog",
    "identity",
    "notifications",
    "billing",
    "inventory",
    "shipping",
    "reviews",
)
OWNERS = ("acme", "globex", "initech")
TENANT_SLUGS = ("acme", "bayside-auto", "crestline-motors", "dune-cars", "evergreen-ford")

# Seven hex digits (28 bits) per draw: `u(col, k)` is a uniform number in [0, 1) taken from the
# k-th 7-digit slice of the md5 hex string `col` (k = 0..3, four draws per md5).
_U28 = 268_435_456.0


def _u(column: str, k: int) -> str:
    return f"(('x' || substr({column}, {1 + 7 * k}, 7))::bit(28)::int / {_U28})"


def _hash(tag: str, *index: str) -> str:
    """SQL: md5 of the seed, a fixed tag and the index expressions (tags are code constants)."""
    # '/' separators: a colon in the SQL text would read as a bind parameter to text().
    parts = " || '/' || ".join(index)
    return f"md5(:seed || '/{tag}/' || {parts})"


TABLE_CODES = {"repo": 1, "run": 2, "agent": 3, "tool": 4, "verdict": 5, "tenant": 6}


def _sample_uuid(table: str, index: str) -> str:
    """SQL: `5a3b1e00-SSSS-8SSS-8TNN-NNNNNNNNNNNN`, a version-8 uuid: S the seed's digest
    (bound as :seed_a, :seed_b), T the table's code, N the row index in hex. Ids of one seed
    ascend with the index, so the primary-key index grows at its right edge (fast loads)."""
    code = f"{TABLE_CODES[table]:x}"
    return (
        f"('{SAMPLE_PREFIX}' || :seed_a || '8' || :seed_b || '8{code}'"
        f" || lpad(to_hex({index}), 14, '0'))::uuid"
    )


def _default_now() -> datetime:
    """The current hour: two calls within an hour generate the same timestamps."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def generate(
    conn: Connection,
    *,
    seed: int = 42,
    repositories: int = 6,
    days: int = 14,
    runs_per_day: int = 40,
    tenants: int = 5,
    weeks: int = 12,
    pages: int = 8,
    now: datetime | None = None,
    on_step: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Insert the sample into the caller's transaction; return the rows inserted per table.

    `days * runs_per_day` runs end within `days` days before `now` (default: the current hour),
    spread over `repositories` repositories (the last one has `kpi_enabled = false` when there
    are two or more). Each of `tenants` tenants gets AVI reports for the `weeks` Mondays before
    `now`'s week and one audit per week for each of `pages` vehicle pages; with three or more
    tenants the last one has no AVI report and the one before it no audit. A second call with
    the same arguments inserts nothing. Tenant slugs are fixed (`TENANT_SLUGS`): a slug taken
    by a tenant that is not this sample's skips that tenant and its reports, so load a second
    seed only after `reset`. `on_step(table, rows_inserted)` is called after each table (for a
    progress bar: `len(STEPS)` steps).
    """
    for name, value in {
        "seed": seed,
        "repositories": repositories,
        "days": days,
        "runs_per_day": runs_per_day,
        "tenants": tenants,
        "weeks": weeks,
        "pages": pages,
    }.items():
        minimum = 0 if name == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"sample {name} must be a whole number >= {minimum}, got {value!r}")
    seed_digest = hashlib.md5(f"kpictl-sample/{seed}".encode()).hexdigest()
    params: dict[str, Any] = {
        "seed": str(seed),
        "seed_a": seed_digest[:4],
        "seed_b": seed_digest[4:7],
        "now": now or _default_now(),
        "repositories": repositories,
        "days": days,
        "runs": days * runs_per_day,
        "tenants": tenants,
        "weeks": weeks,
        "pages": pages,
    }
    counts: dict[str, int] = {}
    for table, statement in _STATEMENTS:
        if table == "sample_runs":
            conn.execute(text(statement), params)
            continue
        counts[table] = conn.execute(text(statement), params).rowcount
        if on_step is not None:
            on_step(table, counts[table])
    conn.execute(text("DROP TABLE sample_runs"))
    # Fresh planner statistics, so that an aggregate right after a large load plans well
    # (ANALYZE sees this transaction's own rows). Table names come from the fixed list above.
    loaded = [table for table, rows in counts.items() if rows]
    if loaded:
        conn.execute(text(f"ANALYZE {', '.join(loaded)}"))
    return counts


SAMPLE_LOW = f"{SAMPLE_PREFIX}-0000-0000-0000-000000000000"
SAMPLE_HIGH = f"{SAMPLE_PREFIX}-ffff-ffff-ffff-ffffffffffff"
# SQL: is {column} a sample id (any seed)? Binds :low and :high.
IS_SAMPLE = (
    "{column} BETWEEN CAST(:low AS uuid) AND CAST(:high AS uuid)"
    " AND substr({column}::text, 15, 1) = '8'"
)


def reset(conn: Connection) -> dict[str, int]:
    """Delete every sample row (whatever its seed), with the tenants' kpi_history and the run
    and product snapshots computed from the sample; no other row.

    kpi_history has forced row-level security, so its rows are deleted tenant by tenant with
    `app.tenant` set for the transaction, as every kpictl writer does.
    """
    is_sample = IS_SAMPLE
    params = {"low": SAMPLE_LOW, "high": SAMPLE_HIGH}
    counts: dict[str, int] = {}
    tenant_ids = conn.execute(
        text(f"SELECT id FROM tenants WHERE {is_sample.format(column='id')} ORDER BY id"), params
    ).scalars()
    history = 0
    for tenant_id in list(tenant_ids):
        conn.execute(
            text("SELECT set_config('app.tenant', :tenant, true)"), {"tenant": str(tenant_id)}
        )
        history += conn.execute(
            text("DELETE FROM kpi_history WHERE tenant_id = :tenant"), {"tenant": tenant_id}
        ).rowcount
    conn.execute(text("SELECT set_config('app.tenant', '', true)"))
    counts["kpi_history"] = history
    for table, column in (
        ("verdict_outcomes", "id"),
        ("mcp_tool_calls", "id"),
        ("agent_runs", "id"),
        ("workflow_executions", "id"),
        ("repositories", "id"),
        ("avi_reports", "tenant_id"),
        ("vdp_vli_audit", "tenant_id"),
        ("tenants", "id"),
        ("kpi_snapshots", "scope_id"),  # what kpictl derived from sample runs and products
    ):
        counts[table] = conn.execute(
            text(f"DELETE FROM {table} WHERE {is_sample.format(column=column)}"), params
        ).rowcount
    return counts


# --- the statements, in order ---------------------------------------------------------------
# One temporary table holds the runs' drawn attributes, so that each child table reads them
# once instead of recomputing every hash. `g` is the run index, 0-based. The digests sit in
# MATERIALIZED CTEs: an inlined one would evaluate md5() again at every reference.

_RUN = _hash("run", "g")
_RUN2 = _hash("run2", "g")

_SAMPLE_RUNS = f"""
CREATE TEMPORARY TABLE sample_runs ON COMMIT DROP AS
WITH draws AS MATERIALIZED (
    SELECT g, {_RUN} AS r1, {_RUN2} AS r2
    FROM generate_series(0, :runs - 1) AS g
), repository_ids AS (
    SELECT i, {_sample_uuid("repo", "i")} AS id FROM generate_series(0, :repositories - 1) AS i
), shaped AS MATERIALIZED (
    SELECT
        g,
        -- the first six runs take each status once; then 70 % completed, 14 % failed, ...
        CASE
            WHEN g < 6 THEN (ARRAY['pending', 'running', 'paused', 'completed', 'failed',
                                   'cancelled'])[g + 1]
            WHEN g IN (6, 7) THEN 'completed'
            WHEN {_u("r1", 0)} < 0.70 THEN 'completed'
            WHEN {_u("r1", 0)} < 0.84 THEN 'failed'
            WHEN {_u("r1", 0)} < 0.90 THEN 'cancelled'
            WHEN {_u("r1", 0)} < 0.94 THEN 'running'
            WHEN {_u("r1", 0)} < 0.97 THEN 'pending'
            ELSE 'paused'
        END AS status,
        -- end instant uniform over the window; duration 1-60 minutes, skewed short
        CAST(:now AS timestamptz) - make_interval(secs => {_u("r1", 1)} * :days * 86400) AS ends,
        make_interval(secs => 60 + 3540 * power({_u("r1", 2)}, 2)) AS duration,
        CASE
            WHEN g = 7 OR {_u("r1", 3)} < 0.02 THEN NULL
            ELSE g % :repositories
        END AS repository_index,
        -- about 0.5 % of finished runs (and run 6) end before they start
        (g = 6 OR {_u("r2", 0)} < 0.005) AS invalid,
        floor({_u("r2", 1)} * 2)::int + 1 AS agent_count,
        -- the first eight runs have at least one tool call each
        CASE WHEN g < 8 THEN 1 ELSE 0 END + floor({_u("r2", 2)} * 3)::int AS tool_count,
        {_u("r2", 3)} AS verdict_draw
    FROM draws
)
SELECT
    g,
    {_sample_uuid("run", "g")} AS id,
    status,
    repository_ids.id AS repository_id,
    CASE
        WHEN status = 'pending' THEN NULL
        -- still going: started within the last hour or so
        WHEN status IN ('running', 'paused') THEN CAST(:now AS timestamptz) - duration
        WHEN invalid THEN ends + interval '5 minutes'
        ELSE ends - duration
    END AS started_at,
    CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN ends END AS completed_at,
    CASE
        WHEN status = 'pending' THEN CAST(:now AS timestamptz) - duration / 10
        WHEN status IN ('running', 'paused') THEN CAST(:now AS timestamptz) - duration * 1.01
        ELSE ends - duration - interval '2 seconds'
    END AS created_at,
    agent_count,
    tool_count,
    verdict_draw
FROM shaped
LEFT JOIN repository_ids ON repository_ids.i = shaped.repository_index
"""

_REPOSITORIES = f"""
INSERT INTO repositories (id, owner, name, kpi_enabled, created_at)
SELECT
    {_sample_uuid("repo", "i")},
    (ARRAY{list(OWNERS)!r})[i % {len(OWNERS)} + 1],
    (ARRAY{list(PRODUCT_NAMES)!r})[i % {len(PRODUCT_NAMES)} + 1]
        || CASE WHEN i >= {len(PRODUCT_NAMES)} THEN '-' || (i / {len(PRODUCT_NAMES)} + 1) ELSE '' END,
    NOT (:repositories >= 2 AND i = :repositories - 1),
    CAST(:now AS timestamptz) - make_interval(days => :days + 30)
FROM generate_series(0, :repositories - 1) AS i
ON CONFLICT DO NOTHING
"""

_EXECUTIONS = """
INSERT INTO workflow_executions (id, repository_id, status, started_at, completed_at, created_at)
SELECT id, repository_id, status, started_at, completed_at, created_at
FROM sample_runs
ORDER BY g
ON CONFLICT DO NOTHING
"""

# Agent runs: 1-2 per started run; 10 % without total_tokens, 5 % without prompt_tokens.
_AGENT_RUNS = f"""
WITH child AS MATERIALIZED (
    SELECT r.id AS execution_id, r.created_at, g, k,
           {_sample_uuid("agent", "4 * g + k")} AS id, {_hash("agent", "g", "k")} AS h
    FROM sample_runs AS r
    CROSS JOIN LATERAL generate_series(1, r.agent_count) AS k
    WHERE r.status <> 'pending'
), tokens AS (
    SELECT child.*,
           400 + floor({_u("h", 0)} * 12000)::int AS prompt,
           50 + floor({_u("h", 1)} * 3000)::int AS completion
    FROM child
)
INSERT INTO agent_runs (id, execution_id, prompt_tokens, completion_tokens, total_tokens,
                        created_at)
SELECT
    id,
    execution_id,
    -- forced on runs 4 and 3 so that even a tiny sample has both cases
    CASE WHEN (g = 4 AND k = 1) OR {_u("h", 2)} < 0.05 THEN NULL ELSE prompt END,
    completion,
    CASE WHEN (g = 3 AND k = 1) OR {_u("h", 3)} < 0.10 THEN NULL ELSE prompt + completion END,
    created_at + make_interval(secs => k)
FROM tokens
ON CONFLICT DO NOTHING
"""

_ERRORS = "ARRAY['timeout after 30s', 'rate limited (429)', 'tool not found', 'invalid arguments']"

# Tool calls: 0-2 per started run (1-3 for the first eight), 8 % with an error.
_TOOL_CALLS = f"""
WITH child AS MATERIALIZED (
    SELECT r.id AS execution_id, r.created_at, g, k,
           {_sample_uuid("tool", "4 * g + k")} AS id, {_hash("tool", "g", "k")} AS h
    FROM sample_runs AS r
    CROSS JOIN LATERAL generate_series(1, r.tool_count) AS k
    WHERE r.status <> 'pending'
)
INSERT INTO mcp_tool_calls (id, execution_id, error, created_at)
SELECT
    id,
    execution_id,
    CASE WHEN (g = 3 AND k = 1) OR {_u("h", 0)} < 0.08 THEN ({_ERRORS})[floor({_u("h", 1)} * 4)::int + 1] END,
    created_at + make_interval(secs => 10 * k)
FROM child
ON CONFLICT DO NOTHING
"""

# Verdicts: for 85 % of finished runs (and the first eight); 3 % undecided (NULL decided_at).
_VERDICTS = f"""
WITH child AS MATERIALIZED (
    SELECT r.*, {_sample_uuid("verdict", "g")} AS verdict_id, {_hash("verdict", "g")} AS h
    FROM sample_runs AS r
    WHERE r.completed_at IS NOT NULL AND (g < 8 OR verdict_draw < 0.85)
)
INSERT INTO verdict_outcomes (id, execution_id, outcome, decided_at, created_at)
SELECT
    verdict_id,
    id,
    CASE
        WHEN g BETWEEN 3 AND 6 THEN (ARRAY{list(OUTCOMES)!r})[g - 2]
        WHEN verdict_draw < 0.70 * 0.85 THEN 'accepted'
        WHEN verdict_draw < 0.85 * 0.85 THEN 'overridden'
        WHEN verdict_draw < 0.93 * 0.85 THEN 'escalated'
        ELSE 'unknown'
    END,
    CASE
        WHEN g = 7 OR {_u("h", 0)} < 0.03 THEN NULL
        ELSE completed_at + make_interval(secs => 30 + {_u("h", 1)} * 1800)
    END,
    completed_at
FROM child
ON CONFLICT DO NOTHING
"""

_TENANTS = f"""
INSERT INTO tenants (id, slug, name, created_at)
SELECT
    {_sample_uuid("tenant", "t")},
    slug,
    initcap(replace(slug, '-', ' ')),
    CAST(:now AS timestamptz) - make_interval(days => 7 * :weeks + 30)
FROM generate_series(0, :tenants - 1) AS t
CROSS JOIN LATERAL (
    SELECT (ARRAY{list(TENANT_SLUGS)!r})[t % {len(TENANT_SLUGS)} + 1]
        || CASE WHEN t >= {len(TENANT_SLUGS)} THEN '-' || (t / {len(TENANT_SLUGS)} + 1) ELSE '' END
        AS slug
) AS named
ON CONFLICT DO NOTHING
"""

# The Monday of `now`'s week minus (weeks - w) weeks: w = weeks - 1 is last week.
_WEEK = "(date_trunc('week', CAST(:now AS timestamptz))::date - 7 * (:weeks - w))"

# AVI reports: one per tenant and week, a second (later, different) one for ~15 % of weeks and
# always for tenant 0's latest week; `hrp` 60 % a number, 10 % a numeric string, 10 % junk, 20 %
# no clarity_json. With 3+ tenants the last one has no report at all (history fill: NO_AVI).
_AVI_REPORTS = f"""
INSERT INTO avi_reports (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
                         clarity_json, created_at)
SELECT tenant_id, as_of, aiv, ati, crs, elasticity, clarity, created_at
FROM (
    SELECT
        {_sample_uuid("tenant", "t")} AS tenant_id,
        {_WEEK} AS as_of,
        round((40 + 55 * {_u("h", 0)})::numeric, 3) AS aiv,
        round((30 + 60 * {_u("h", 1)})::numeric, 3) AS ati,
        round((50 + 49 * {_u("h", 2)})::numeric, 3) AS crs,
        round((5 + 245 * {_u("h2", 0)})::numeric, 3) AS elasticity,
        CASE
            -- tenant 0 cycles through the four shapes week by week; the others draw one
            WHEN t = 0 THEN (ARRAY[
                jsonb_build_object('hrp', round({_u("h2", 2)}::numeric, 4), 'source', 'sample'),
                jsonb_build_object('hrp', round({_u("h2", 2)}::numeric, 3)::text),
                jsonb_build_object('hrp', true),
                NULL])[(w + copy) % 4 + 1]
            WHEN {_u("h2", 1)} < 0.60 THEN jsonb_build_object(
                'hrp', round({_u("h2", 2)}::numeric, 4), 'source', 'sample')
            WHEN {_u("h2", 1)} < 0.70 THEN jsonb_build_object(
                'hrp', round({_u("h2", 2)}::numeric, 3)::text)
            WHEN {_u("h2", 1)} < 0.75 THEN jsonb_build_object('hrp', true)
            WHEN {_u("h2", 1)} < 0.80 THEN jsonb_build_object('hrp', 'n/a')
        END AS clarity,
        LEAST(
            CAST(:now AS timestamptz),
            ({_WEEK} + 7)::timestamp AT TIME ZONE 'UTC' + make_interval(hours => 6 + 3 * copy)
        ) AS created_at
    FROM generate_series(0, :tenants - 1) AS t
    CROSS JOIN generate_series(0, :weeks - 1) AS w
    CROSS JOIN generate_series(0, 1) AS copy
    CROSS JOIN LATERAL (
        SELECT {_hash("avi", "t", "w", "copy")} AS h, {_hash("avi2", "t", "w", "copy")} AS h2,
               {_hash("avi-dup", "t", "w")} AS dup
    ) AS drawn
    WHERE NOT (:tenants >= 3 AND t = :tenants - 1)
      AND (copy = 0 OR (t = 0 AND w = :weeks - 1) OR {_u("dup", 0)} < 0.15)
) AS report
-- only for sample tenants that exist (a slug taken by another tenant skips its sample twin)
WHERE EXISTS (SELECT 1 FROM tenants WHERE tenants.id = report.tenant_id)
  AND NOT EXISTS (
    SELECT 1 FROM avi_reports AS existing
    WHERE existing.tenant_id = report.tenant_id AND existing.as_of = report.as_of
      AND existing.created_at = report.created_at
)
ORDER BY tenant_id, as_of, created_at
"""

# Audits: each vehicle page audited once a week at a drawn instant of that week, integrity
# 60-100 %. With 3+ tenants the second-to-last has none (history fill: vli_fallback).
_VLI_AUDITS = f"""
INSERT INTO vdp_vli_audit (tenant_id, vdp_id, as_of, integrity_pct, created_at)
SELECT tenant_id, vdp_id, as_of, integrity, as_of
FROM (
    SELECT
        {_sample_uuid("tenant", "t")} AS tenant_id,
        'vdp-' || lpad(p::text, 5, '0') AS vdp_id,
        {_WEEK}::timestamp AT TIME ZONE 'UTC'
            + make_interval(secs => floor({_u("h", 0)} * 7 * 86400)) AS as_of,
        round((60 + 40 * {_u("h", 1)})::numeric, 2) AS integrity
    FROM generate_series(0, :tenants - 1) AS t
    CROSS JOIN generate_series(0, :weeks - 1) AS w
    CROSS JOIN generate_series(0, :pages - 1) AS p
    CROSS JOIN LATERAL (SELECT {_hash("vli", "t", "w", "p")} AS h) AS drawn
    WHERE NOT (:tenants >= 3 AND t = :tenants - 2)
) AS audit
WHERE EXISTS (SELECT 1 FROM tenants WHERE tenants.id = audit.tenant_id)
  AND NOT EXISTS (
    SELECT 1 FROM vdp_vli_audit AS existing
    WHERE existing.tenant_id = audit.tenant_id AND existing.vdp_id = audit.vdp_id
      AND existing.as_of = audit.as_of
)
ORDER BY tenant_id, vdp_id, as_of
"""

_STATEMENTS = (
    ("sample_runs", _SAMPLE_RUNS),
    ("repositories", _REPOSITORIES),
    ("workflow_executions", _EXECUTIONS),
    ("agent_runs", _AGENT_RUNS),
    ("mcp_tool_calls", _TOOL_CALLS),
    ("verdict_outcomes", _VERDICTS),
    ("tenants", _TENANTS),
    ("avi_reports", _AVI_REPORTS),
    ("vdp_vli_audit", _VLI_AUDITS),
)

STEPS = tuple(table for table, _ in _STATEMENTS if table != "sample_runs")
