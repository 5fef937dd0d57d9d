"""A live AFU-9 control-center database, built from the facts of the platform's own migrations.

The shapes follow the platform's published migrations (`adaefler-art/codefactory-control`,
`database/migrations/`: 001 initial schema, 004 verdict engine, 006 KPI aggregation, 007
product registry, 012 pause support) and the addendum "Exact shapes of the platform's objects"
of docs/spec/adoption.md, written here in our own words: every object kpictl meets has the
platform's column order, types, result types, filters and units. `tests/repo/test_afu9_standin.py`
compares the catalog signatures with a list kept in that test, so that an edit here cannot
drift from the platform silently.

`build_afu9(conn, now)` creates the platform's shape on an empty database and fills it with rows
whose every value is fixed here (ids included), so that tests state expectations as literals.
Besides the platform's objects it adds what a site's DBA typically adds: roles with grants, and
two views of their own over the KPI tables (one on top of the platform's view, one over the
jobs), to prove that adoption keeps objects it does not know.

`fingerprint(conn)` is a digest of the catalog and of every row: equal fingerprints mean the
database was not changed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

APP_ROLE = "afu9_app"  # owns the platform's views (as a deploy role would)
READER_ROLE = "afu9_readonly"  # dashboards: SELECT on the views (the GRANT that must survive)
SERVICE_ROLE = "afu9_service"  # the platform's Node service: SELECT, INSERT on kpi_snapshots


def uid(number: int) -> uuid.UUID:
    return uuid.UUID(int=number)


REPO_A, REPO_B, REPO_C = uid(0xA), uid(0xB), uid(0xC)
# Recent runs (the last 24 hours) and old ones (three days ago).
RUN_A1, RUN_A2, RUN_B1, RUN_NULL, RUN_RUNNING, RUN_CANCELLED = (uid(0x100 + n) for n in range(6))
RUN_OLD7, RUN_OLD8 = uid(0x107), uid(0x108)
JOB_DONE, JOB_FAILED, JOB_PENDING, JOB_STUCK = (uid(0x200 + n) for n in range(4))

# kpi_snapshots ids (0x300...): see `snapshot_rows` for what each one is.
DUPLICATES_REMOVED = 5
SNAPSHOT_ROWS = 27

PLATFORM_DDL = f"""
DO $$ BEGIN
  CREATE ROLE {APP_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE {READER_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE {SERVICE_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;

-- 001: workflows and their executions (zone-less timestamps throughout)
CREATE TABLE workflows (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name varchar(255) NOT NULL UNIQUE,
  definition jsonb NOT NULL DEFAULT '{{}}',
  enabled boolean DEFAULT true,
  created_at timestamp DEFAULT now(),
  updated_at timestamp DEFAULT now()
);
CREATE TABLE workflow_executions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workflow_id uuid REFERENCES workflows (id) ON DELETE CASCADE,
  repository_id uuid,
  status varchar(50) NOT NULL DEFAULT 'pending',
  input jsonb,
  output jsonb,
  context jsonb,
  started_at timestamp DEFAULT now(),
  completed_at timestamp,
  error text,
  triggered_by varchar(255),
  github_run_id varchar(255),
  created_at timestamp DEFAULT now(),
  updated_at timestamp DEFAULT now(),
  pause_metadata jsonb,
  -- 012 admits 'paused'
  CONSTRAINT chk_execution_status
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'paused'))
);
CREATE INDEX idx_executions_workflow_id ON workflow_executions (workflow_id);
CREATE INDEX idx_executions_repository_id ON workflow_executions (repository_id);
CREATE INDEX idx_executions_status ON workflow_executions (status);
CREATE INDEX idx_executions_started_at ON workflow_executions (started_at DESC);
CREATE INDEX idx_executions_paused ON workflow_executions (status) WHERE status = 'paused';
CREATE TABLE workflow_steps (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  execution_id uuid REFERENCES workflow_executions (id) ON DELETE CASCADE,
  step_name varchar(255) NOT NULL,
  step_index integer NOT NULL,
  status varchar(50) NOT NULL DEFAULT 'pending',
  created_at timestamp DEFAULT now()
);
CREATE TABLE repositories (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner varchar(255) NOT NULL,
  name varchar(255) NOT NULL,
  full_name varchar(511) GENERATED ALWAYS AS (owner || '/' || name) STORED,
  default_branch varchar(255) DEFAULT 'main',
  enabled boolean DEFAULT true,
  config jsonb,
  created_at timestamp DEFAULT now(),
  updated_at timestamp DEFAULT now(),
  UNIQUE (owner, name)
);
CREATE TABLE agent_runs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  execution_id uuid REFERENCES workflow_executions (id) ON DELETE CASCADE,
  step_id uuid REFERENCES workflow_steps (id) ON DELETE CASCADE,
  agent_type varchar(100) NOT NULL,
  model varchar(100),
  prompt_tokens integer,
  completion_tokens integer,
  total_tokens integer,
  duration_ms integer,
  cost_usd numeric(10, 6),
  started_at timestamp DEFAULT now(),
  completed_at timestamp,
  error text,
  created_at timestamp DEFAULT now()
);
CREATE INDEX idx_agent_runs_execution_id ON agent_runs (execution_id);
CREATE TABLE mcp_tool_calls (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  execution_id uuid REFERENCES workflow_executions (id) ON DELETE CASCADE,
  agent_run_id uuid REFERENCES agent_runs (id) ON DELETE SET NULL,
  server_name varchar(255) NOT NULL,
  tool_name varchar(255) NOT NULL,
  params jsonb,
  result jsonb,
  error text,
  duration_ms integer,
  started_at timestamp DEFAULT now(),
  completed_at timestamp,
  created_at timestamp DEFAULT now()
);
CREATE INDEX idx_tool_calls_execution_id ON mcp_tool_calls (execution_id);
CREATE FUNCTION update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$fn$;
CREATE TRIGGER update_workflow_executions_updated_at BEFORE UPDATE ON workflow_executions
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- 004: verdicts
CREATE TABLE verdicts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  execution_id uuid REFERENCES workflow_executions (id) ON DELETE CASCADE,
  fingerprint_id varchar(64) NOT NULL,
  error_class varchar(100) NOT NULL,
  service varchar(255) NOT NULL,
  confidence_score integer NOT NULL CHECK (confidence_score BETWEEN 0 AND 100),
  proposed_action varchar(50) NOT NULL
    CHECK (proposed_action IN ('WAIT_AND_RETRY', 'OPEN_ISSUE', 'HUMAN_REQUIRED')),
  tokens text[] NOT NULL DEFAULT '{{}}',
  signals jsonb NOT NULL,
  created_at timestamp DEFAULT now()
);

-- 006: KPI snapshots, verdict outcomes, jobs (no unique key; numeric(15,4); zone-less)
CREATE TABLE kpi_snapshots (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kpi_name varchar(100) NOT NULL,
  kpi_version varchar(20) NOT NULL DEFAULT '1.0.0',
  level varchar(20) NOT NULL,
  scope_id uuid,
  value numeric(15, 4),
  unit varchar(50),
  metadata jsonb,
  calculated_at timestamp NOT NULL DEFAULT now(),
  period_start timestamp NOT NULL,
  period_end timestamp NOT NULL,
  created_at timestamp DEFAULT now(),
  CONSTRAINT chk_kpi_level CHECK (level IN ('factory', 'product', 'run'))
);
CREATE INDEX idx_kpi_snapshots_name_time ON kpi_snapshots (kpi_name, calculated_at DESC);
CREATE INDEX idx_kpi_snapshots_level ON kpi_snapshots (level);
CREATE INDEX idx_kpi_snapshots_scope ON kpi_snapshots (scope_id) WHERE scope_id IS NOT NULL;
CREATE INDEX idx_kpi_snapshots_period ON kpi_snapshots (period_start, period_end);
CREATE INDEX idx_kpi_snapshots_version ON kpi_snapshots (kpi_version);

CREATE TABLE verdict_outcomes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  verdict_id uuid NOT NULL REFERENCES verdicts (id) ON DELETE CASCADE,
  execution_id uuid NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
  outcome varchar(50) NOT NULL,
  outcome_reason text,
  decided_by varchar(255),
  decided_at timestamp DEFAULT now(),
  metadata jsonb,
  created_at timestamp DEFAULT now(),
  CONSTRAINT chk_verdict_outcome
    CHECK (outcome IN ('accepted', 'overridden', 'escalated', 'unknown'))
);
CREATE INDEX idx_verdict_outcomes_execution ON verdict_outcomes (execution_id);
CREATE INDEX idx_verdict_outcomes_decided_at ON verdict_outcomes (decided_at DESC);

CREATE TABLE kpi_aggregation_jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  job_type varchar(100) NOT NULL,
  status varchar(50) NOT NULL DEFAULT 'pending',
  kpi_names text[],
  period_start timestamp NOT NULL,
  period_end timestamp NOT NULL,
  started_at timestamp,
  completed_at timestamp,
  duration_ms integer,
  snapshots_created integer DEFAULT 0,
  error text,
  metadata jsonb,
  created_at timestamp DEFAULT now(),
  CONSTRAINT chk_job_status CHECK (status IN ('pending', 'running', 'completed', 'failed'))
);
CREATE INDEX idx_kpi_jobs_status ON kpi_aggregation_jobs (status);
CREATE INDEX idx_kpi_jobs_started_at ON kpi_aggregation_jobs (started_at DESC);
CREATE INDEX idx_kpi_jobs_type ON kpi_aggregation_jobs (job_type);

ALTER TABLE repositories ADD COLUMN product_metadata jsonb;
ALTER TABLE repositories ADD COLUMN kpi_enabled boolean DEFAULT true;
CREATE INDEX idx_repositories_kpi_enabled ON repositories (kpi_enabled) WHERE kpi_enabled;

-- The factory view: every run started in the last 24 hours, whatever its status.
CREATE MATERIALIZED VIEW mv_factory_kpis_24h AS
SELECT avg(extract(epoch FROM completed_at - started_at) * 1000)
         FILTER (WHERE status IN ('completed', 'failed')) AS mtti_ms,
       round(100 * (count(*) FILTER (WHERE status = 'completed'))::numeric
             / nullif(count(*) FILTER (WHERE status IN ('completed', 'failed')), 0), 2)
         AS success_rate_pct,
       count(*) AS total_executions,
       count(*) FILTER (WHERE status = 'completed') AS completed_executions,
       count(*) FILTER (WHERE status = 'failed') AS failed_executions,
       count(*) FILTER (WHERE status = 'running') AS running_executions,
       avg(extract(epoch FROM completed_at - started_at) * 1000)
         FILTER (WHERE status = 'completed') AS avg_duration_ms,
       min(started_at) AS period_start,
       max(started_at) AS period_end,
       now() AS calculated_at
FROM workflow_executions
WHERE started_at >= now() - interval '24 hours';
CREATE UNIQUE INDEX ON mv_factory_kpis_24h (calculated_at);

-- The product view: the published migration's shape (a repository without runs in the window
-- still gets a row).
CREATE MATERIALIZED VIEW mv_product_kpis_7d AS
SELECT r.id AS repository_id,
       r.owner || '/' || r.name AS product_name,
       round(100 * (count(*) FILTER (WHERE e.status = 'completed'))::numeric
             / nullif(count(*), 0), 2) AS success_rate_pct,
       count(*) / 7.0 AS daily_throughput,
       count(*) AS total_executions,
       count(*) FILTER (WHERE e.status = 'completed') AS completed_executions,
       count(*) FILTER (WHERE e.status = 'failed') AS failed_executions,
       avg(extract(epoch FROM e.completed_at - e.started_at) * 1000)
         FILTER (WHERE e.status = 'completed') AS avg_duration_ms,
       min(e.started_at) AS period_start,
       max(e.started_at) AS period_end,
       now() AS calculated_at
FROM repositories r
LEFT JOIN workflow_executions e ON e.repository_id = r.id
WHERE e.started_at >= now() - interval '7 days' OR e.started_at IS NULL
GROUP BY r.id, r.owner, r.name;
CREATE UNIQUE INDEX ON mv_product_kpis_7d (repository_id);

CREATE FUNCTION refresh_kpi_materialized_views() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  REFRESH MATERIALIZED VIEW CONCURRENTLY mv_factory_kpis_24h;
  REFRESH MATERIALIZED VIEW CONCURRENTLY mv_product_kpis_7d;
END
$fn$;

-- Factory rows only; the age in seconds, then the zone-less newest calculated_at.
CREATE FUNCTION get_kpi_freshness(p_kpi_name varchar DEFAULT NULL)
RETURNS TABLE (kpi_name varchar, freshness_seconds numeric, last_calculated_at timestamp)
LANGUAGE plpgsql AS $fn$
BEGIN
  RETURN QUERY
  SELECT ks.kpi_name::varchar,
         extract(epoch FROM now() - max(ks.calculated_at))::numeric,
         max(ks.calculated_at)
  FROM kpi_snapshots ks
  WHERE (p_kpi_name IS NULL OR ks.kpi_name = p_kpi_name) AND ks.level = 'factory'
  GROUP BY ks.kpi_name;
END
$fn$;

-- Every outcome of the window counts in the denominator (unknown included).
CREATE FUNCTION calculate_steering_accuracy(p_period_hours integer DEFAULT 24)
RETURNS TABLE (steering_accuracy_pct numeric, total_decisions bigint, accepted_decisions bigint,
               overridden_decisions bigint, escalated_decisions bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
  RETURN QUERY
  SELECT round(100 * (count(*) FILTER (WHERE outcome = 'accepted'))::numeric
               / nullif(count(*), 0), 2),
         count(*),
         count(*) FILTER (WHERE outcome = 'accepted'),
         count(*) FILTER (WHERE outcome = 'overridden'),
         count(*) FILTER (WHERE outcome = 'escalated')
  FROM verdict_outcomes
  WHERE decided_at >= now() - p_period_hours * interval '1 hour';
END
$fn$;

-- On the transition into completed/failed: two plain INSERTs, no NULL guard (a run set to
-- completed without completed_at fails the platform's UPDATE), duration in 'milliseconds'.
CREATE FUNCTION create_run_kpi_snapshot() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.status IN ('completed', 'failed') AND OLD.status NOT IN ('completed', 'failed') THEN
    INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit,
                               calculated_at, period_start, period_end)
    VALUES ('run_duration', '1.0.0', 'run', NEW.id,
            extract(epoch FROM NEW.completed_at - NEW.started_at) * 1000, 'milliseconds',
            now(), NEW.started_at, NEW.completed_at);
    INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit,
                               calculated_at, period_start, period_end)
    VALUES ('run_success', '1.0.0', 'run', NEW.id,
            CASE WHEN NEW.status = 'completed' THEN 1 ELSE 0 END, 'boolean',
            now(), NEW.started_at, NEW.completed_at);
  END IF;
  RETURN NEW;
END
$fn$;
CREATE TRIGGER trigger_create_run_kpi_snapshot
  AFTER UPDATE ON workflow_executions
  FOR EACH ROW EXECUTE FUNCTION create_run_kpi_snapshot();

CREATE INDEX idx_executions_started_completed ON workflow_executions (started_at, completed_at)
  WHERE status IN ('completed', 'failed');
CREATE INDEX idx_executions_repository_time ON workflow_executions (repository_id, started_at DESC)
  WHERE repository_id IS NOT NULL;

-- 007: the product registry, filled by a trigger on repositories, and its KPI view
CREATE TABLE products (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  repository_id uuid NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
  product_key varchar(255) NOT NULL UNIQUE,
  display_name varchar(255) NOT NULL,
  description text,
  metadata jsonb NOT NULL DEFAULT '{{}}',
  kpi_targets jsonb NOT NULL DEFAULT '{{}}',
  enabled boolean DEFAULT true,
  archived boolean DEFAULT false,
  created_at timestamp DEFAULT now(),
  updated_at timestamp DEFAULT now(),
  created_by varchar(255)
);
CREATE FUNCTION auto_create_product_from_repository() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO products (repository_id, product_key, display_name, description, metadata,
                        kpi_targets, enabled, created_by)
  VALUES (NEW.id, NEW.owner || '/' || NEW.name, NEW.name, 'created with its repository',
          '{{"auto_created": true}}', '{{}}', true, 'system')
  ON CONFLICT (product_key) DO NOTHING;
  RETURN NEW;
END
$fn$;
CREATE TRIGGER trigger_auto_create_product AFTER INSERT ON repositories
  FOR EACH ROW EXECUTE FUNCTION auto_create_product_from_repository();

CREATE VIEW v_product_kpi_performance AS
SELECT p.id AS product_id, p.product_key, p.display_name, ks.kpi_name,
       ks.value AS actual_value, ks.unit,
       (p.kpi_targets -> ks.kpi_name)::numeric AS target_value,
       CASE WHEN (p.kpi_targets -> ks.kpi_name)::numeric IS NOT NULL
            THEN ks.value <= (p.kpi_targets -> ks.kpi_name)::numeric END AS meets_target,
       ks.calculated_at, ks.period_start, ks.period_end
FROM products p
JOIN kpi_snapshots ks ON ks.scope_id = p.repository_id
WHERE ks.level = 'product' AND p.enabled AND NOT p.archived;
COMMENT ON VIEW v_product_kpi_performance IS 'Product KPIs for the control center''s dashboard';

-- A site's own additions (not the platform's): a view on top of the platform's view, one over
-- the jobs, roles and grants.
CREATE VIEW v_product_kpi_latest AS
SELECT DISTINCT ON (product_key, kpi_name) product_key, kpi_name, actual_value, calculated_at
FROM v_product_kpi_performance
ORDER BY product_key, kpi_name, calculated_at DESC;
CREATE VIEW v_kpi_job_overview AS
SELECT job_type, status, count(*) AS jobs, max(started_at) AS last_started_at
FROM kpi_aggregation_jobs
WHERE job_type NOT LIKE 'test%'
GROUP BY job_type, status;
GRANT SELECT ON kpi_snapshots, kpi_aggregation_jobs, products TO {APP_ROLE};
ALTER VIEW v_product_kpi_performance OWNER TO {APP_ROLE};
ALTER VIEW v_product_kpi_latest OWNER TO {APP_ROLE};
ALTER VIEW v_kpi_job_overview OWNER TO {APP_ROLE};
GRANT SELECT ON v_product_kpi_performance TO {READER_ROLE};
GRANT SELECT ON mv_factory_kpis_24h, mv_product_kpis_7d TO {READER_ROLE};
GRANT SELECT, INSERT ON kpi_snapshots TO {SERVICE_ROLE};
GRANT SELECT, UPDATE ON workflow_executions TO {SERVICE_ROLE};
GRANT EXECUTE ON FUNCTION get_kpi_freshness(varchar) TO {READER_ROLE};
"""


def build_afu9(conn: Connection, now: datetime) -> None:
    """Create and fill an AFU-9 database; `now` is a naive UTC datetime (the platform's clock)."""
    conn.exec_driver_sql(PLATFORM_DDL, execution_options={"no_parameters": True})
    _sources(conn, now)
    _snapshots(conn, now)
    _jobs(conn, now)
    conn.exec_driver_sql("REFRESH MATERIALIZED VIEW mv_factory_kpis_24h")
    conn.exec_driver_sql("REFRESH MATERIALIZED VIEW mv_product_kpis_7d")


def _sources(conn: Connection, now: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO repositories (id, owner, name, kpi_enabled) VALUES "
            "(:a, 'acme', 'app', true), (:b, 'acme', 'legacy', false), (:c, 'beta', 'web', true)"
        ),
        {"a": REPO_A, "b": REPO_B, "c": REPO_C},
    )
    # The registry's trigger made a product of each repository; one has a KPI target.
    conn.execute(
        text(
            "UPDATE products SET kpi_targets = '{\"product_success_rate\": 90}' "
            "WHERE repository_id = :a"
        ),
        {"a": REPO_A},
    )
    hour, minute = timedelta(hours=1), timedelta(minutes=1)
    runs = [
        # id, repository, status, started, completed
        (RUN_A1, REPO_A, "completed", now - 5 * hour, now - 5 * hour + 10 * minute),
        (RUN_A2, REPO_A, "failed", now - 4 * hour, now - 4 * hour + 20 * minute),
        (RUN_B1, REPO_B, "completed", now - 3 * hour, now - 3 * hour + 30 * minute),
        (RUN_NULL, None, "completed", now - 2 * hour, now - 2 * hour + 4 * minute),
        (RUN_RUNNING, REPO_A, "running", now - 1 * hour, None),
        (RUN_CANCELLED, REPO_A, "cancelled", now - 6 * hour, now - 6 * hour + minute),
        (RUN_OLD7, REPO_A, "completed", now - 72 * hour, now - 72 * hour + 5 * minute),
        (RUN_OLD8, REPO_C, "failed", now - 71 * hour, now - 71 * hour + 2 * minute),
    ]
    for run_id, repository_id, status, started, completed in runs:
        conn.execute(
            text(
                "INSERT INTO workflow_executions (id, repository_id, status, started_at, "
                "completed_at, triggered_by) VALUES (:id, :repo, :status, :started, :completed, "
                "'scheduler')"
            ),
            {
                "id": run_id,
                "repo": repository_id,
                "status": status,
                "started": started,
                "completed": completed,
            },
        )
    conn.execute(
        text(
            "INSERT INTO agent_runs (execution_id, agent_type, prompt_tokens, completion_tokens, "
            "total_tokens) VALUES (:a1, 'planner', 100, 50, NULL), (:a1, 'coder', 10, 10, 1000)"
        ),
        {"a1": RUN_A1},
    )
    conn.execute(
        text(
            "INSERT INTO mcp_tool_calls (execution_id, server_name, tool_name, error) VALUES "
            "(:a1, 'github', 'read_file', NULL), (:a1, 'github', 'write_file', NULL), "
            "(:a1, 'deploy', 'run_tests', 'exit 1'), (:a1, 'github', 'open_pr', NULL)"
        ),
        {"a1": RUN_A1},
    )
    verdicts = [
        # outcome, decided_at
        ("accepted", now - 3 * hour),
        ("accepted", now - 2 * hour),
        ("overridden", now - 90 * minute),
        ("unknown", now - 1 * hour),
        ("escalated", None),
        ("accepted", now - 72 * hour),
    ]
    for number, (outcome, decided_at) in enumerate(verdicts):
        verdict_id = uid(0x400 + number)
        conn.execute(
            text(
                "INSERT INTO verdicts (id, execution_id, fingerprint_id, error_class, service, "
                "confidence_score, proposed_action, signals) VALUES (:id, :run, 'f1', "
                "'MISSING_SECRET', 'SecretsManager', 85, 'OPEN_ISSUE', '{}')"
            ),
            {"id": verdict_id, "run": RUN_A1},
        )
        conn.execute(
            text(
                "INSERT INTO verdict_outcomes (verdict_id, execution_id, outcome, decided_at) "
                "VALUES (:verdict, :run, :outcome, :decided)"
            ),
            {"verdict": verdict_id, "run": RUN_A1, "outcome": outcome, "decided": decided_at},
        )


def snapshot_rows(now: datetime) -> list[dict]:
    """Every kpi_snapshots row of the fixture; `kept` is False for the exact duplicates that
    adoption removes (an older `calculated_at` on the same key)."""
    hour, minute, second = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
    day_end = datetime(now.year, now.month, now.day) - 2 * timedelta(days=1)
    day_start = day_end - timedelta(days=1)
    rows: list[dict] = []

    def add(number, level, name, scope, value, unit, start, end, calculated, kept=True, **extra):
        rows.append(
            {
                "id": uid(0x300 + number),
                "level": level,
                "kpi_name": name,
                "kpi_version": extra.get("version", "1.0.0"),
                "scope_id": scope,
                "value": value,
                "unit": unit,
                "metadata": extra.get("metadata"),
                "period_start": start,
                "period_end": end,
                "calculated_at": calculated,
                "created_at": calculated,
                "kept": kept,
            }
        )

    # Factory rows of the old scheduler for one day; mtti written twice on the same key.
    meta = '{"source": "scheduler"}'
    add(
        0,
        "factory",
        "mtti",
        None,
        "300000.0000",
        "ms",
        day_start,
        day_end,
        day_end + 5 * minute,
        False,
        metadata=meta,
    )
    add(
        1,
        "factory",
        "mtti",
        None,
        "310000.5000",
        "ms",
        day_start,
        day_end,
        day_end + 10 * minute,
        metadata=meta,
    )
    add(
        2,
        "factory",
        "mtti",
        None,
        "299999.0000",
        "ms",
        day_start,
        day_end,
        day_end + 5 * minute,
        version="0.9.0",
    )
    add(
        3,
        "factory",
        "success_rate",
        None,
        "85.5000",
        "percent",
        day_start,
        day_end,
        day_end + 5 * minute,
    )
    add(
        4,
        "factory",
        "factory_throughput",
        None,
        "12.3456",
        "runs_per_day",
        day_start,
        day_end,
        day_end + 5 * minute,
    )
    add(
        5,
        "factory",
        "steering_accuracy",
        None,
        "66.6667",
        "percent",
        day_start,
        day_end,
        day_end + 5 * minute,
    )
    add(
        6, "factory", "success_rate", None, None, "percent", day_end, day_end + hour, day_end + hour
    )
    # Product rows appended every cycle on the same period: three of one key.
    add(
        7,
        "product",
        "product_success_rate",
        REPO_A,
        "80.0000",
        "percent",
        day_start,
        day_end,
        day_end + 5 * minute,
        False,
    )
    add(
        8,
        "product",
        "product_success_rate",
        REPO_A,
        "80.0000",
        "percent",
        day_start,
        day_end,
        day_end + 10 * minute,
        False,
    )
    add(
        9,
        "product",
        "product_success_rate",
        REPO_A,
        "81.2500",
        "percent",
        day_start,
        day_end,
        day_end + 15 * minute,
    )
    add(
        10,
        "product",
        "product_success_rate",
        REPO_C,
        "0.0000",
        "percent",
        day_start,
        day_end,
        day_end + 15 * minute,
    )
    add(
        11,
        "product",
        "product_avg_duration",
        REPO_A,
        "123456.7890",
        "ms",
        day_start,
        day_end,
        day_end + 15 * minute,
    )
    add(
        12,
        "product",
        "product_throughput",
        REPO_C,
        "1.0000",
        "runs_per_day",
        day_end,
        day_end + hour,
        day_end + hour + minute,
    )
    # Run rows of the trigger (metadata NULL); the old run double-written by the scheduler.
    runs = [
        (RUN_OLD7, "completed", now - 72 * hour, now - 72 * hour + 5 * minute, "300000.0000"),
        (RUN_OLD8, "failed", now - 71 * hour, now - 71 * hour + 2 * minute, "120000.0000"),
        (RUN_A1, "completed", now - 5 * hour, now - 5 * hour + 10 * minute, "600000.0000"),
        (RUN_A2, "failed", now - 4 * hour, now - 4 * hour + 20 * minute, "1200000.0000"),
        (RUN_B1, "completed", now - 3 * hour, now - 3 * hour + 30 * minute, "1800000.0000"),
        (RUN_NULL, "completed", now - 2 * hour, now - 2 * hour + 4 * minute, "240000.0000"),
    ]
    number = 13
    for run_id, status, started, completed, duration in runs:
        success = "1.0000" if status == "completed" else "0.0000"
        add(
            number,
            "run",
            "run_duration",
            run_id,
            duration,
            "milliseconds",
            started,
            completed,
            completed,
        )
        add(
            number + 1,
            "run",
            "run_success",
            run_id,
            success,
            "boolean",
            started,
            completed,
            completed,
        )
        number += 2
    # The double write of RUN_OLD7: the same two keys a second later, then the first pair is
    # the older one and goes.
    rows[13]["kept"] = False
    rows[14]["kept"] = False
    old7_started, old7_completed = runs[0][2], runs[0][3]
    add(
        25,
        "run",
        "run_duration",
        RUN_OLD7,
        "300000.0000",
        "milliseconds",
        old7_started,
        old7_completed,
        old7_completed + second,
    )
    add(
        26,
        "run",
        "run_success",
        RUN_OLD7,
        "1.0000",
        "boolean",
        old7_started,
        old7_completed,
        old7_completed + second,
    )
    assert len(rows) == SNAPSHOT_ROWS
    assert sum(not row["kept"] for row in rows) == DUPLICATES_REMOVED
    return rows


def _snapshots(conn: Connection, now: datetime) -> None:
    for row in snapshot_rows(now):
        values = {key: value for key, value in row.items() if key != "kept"}
        conn.execute(
            text(
                "INSERT INTO kpi_snapshots (id, level, kpi_name, kpi_version, scope_id, value, "
                "unit, metadata, period_start, period_end, calculated_at, created_at) VALUES "
                "(:id, :level, :kpi_name, :kpi_version, :scope_id, CAST(:value AS numeric), :unit, "
                "CAST(:metadata AS jsonb), :period_start, :period_end, :calculated_at, :created_at)"
            ),
            values,
        )


def _jobs(conn: Connection, now: datetime) -> None:
    day = timedelta(days=1)
    start = datetime(now.year, now.month, now.day) - 3 * day
    jobs = [
        # id, type, status, started, completed, duration, snapshots, error
        (JOB_DONE, "incremental", "completed", start + day, start + day, 850, 12, None),
        (
            JOB_FAILED,
            "incremental",
            "failed",
            start + 2 * day,
            start + 2 * day,
            30000,
            0,
            "timeout",
        ),
        (JOB_PENDING, "full", "pending", None, None, None, 0, None),
        (JOB_STUCK, "incremental", "running", start + 2 * day, None, None, 0, None),
    ]
    for job_id, job_type, status, started, completed, duration, snapshots, error in jobs:
        conn.execute(
            text(
                "INSERT INTO kpi_aggregation_jobs (id, job_type, status, kpi_names, period_start, "
                "period_end, started_at, completed_at, duration_ms, snapshots_created, error, "
                "metadata, created_at) VALUES (:id, :type, :status, ARRAY['mtti', 'success_rate'], "
                ":period_start, :period_end, :started, :completed, :duration, :snapshots, :error, "
                '\'{"trigger": "cron"}\', :created)'
            ),
            {
                "id": job_id,
                "type": job_type,
                "status": status,
                "period_start": start - day,
                "period_end": start,
                "started": started,
                "completed": completed,
                "duration": duration,
                "snapshots": snapshots,
                "error": error,
                "created": started or start,
            },
        )


# --- comparing databases ---------------------------------------------------------------------

CATALOG_QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text,
               c.reloptions::text, obj_description(c.oid, 'pg_class'),
               c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attacl::text, col_description(c.oid, a.attnum)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1""",
    "functions": """
        SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               p.prosrc, p.proacl::text, pg_get_userbyid(p.proowner)
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2""",
    "policies": "SELECT tablename, policyname, qual, with_check FROM pg_policies ORDER BY 1, 2",
}


def fingerprint(conn: Connection) -> dict[str, object]:
    """The catalog of the public schema and an md5 of every table's and view's rows."""
    result: dict[str, object] = {
        name: [tuple(row) for row in conn.exec_driver_sql(query)]
        for name, query in CATALOG_QUERIES.items()
    }
    relations = [
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'm') ORDER BY 1"
        )
    ]
    for relation in relations:
        result[f"rows {relation}"] = conn.exec_driver_sql(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{relation}\" t"
        ).one()
    return result
