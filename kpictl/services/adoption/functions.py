"""The platform's functions during adoption: which ones kpictl replaces, which it checks, which
make it refuse (docs/spec/adoption.md, "Exact shapes of the platform's objects").

Adoption turns the KPI tables' `timestamp` columns into `timestamptz`. A function that reads
them keeps its signature and result type (CREATE OR REPLACE cannot change either), but its body
may no longer produce that type: AFU-9's `get_kpi_freshness` returns `max(calculated_at)` as a
zone-less `last_calculated_at`, which fails once the column is `timestamptz` ("structure of
query does not match function result type"). So the decision is made from the catalog, never
from one exact text of the original:

- `create_run_kpi_snapshot()` (the trigger function): replaced by one that fires on the same
  transition, writes for a valid run exactly the `run_duration` row kpictl writes (unit `ms`,
  same key and value) and the platform's `run_success` row, `ON CONFLICT DO NOTHING`, and writes
  nothing for a run kpictl counts as invalid (so the platform's UPDATE can never fail here).
- `get_kpi_freshness(varchar)`: replaced by a body built from its declared result columns, in
  their declared order and types (factory rows only, zone-less values converted back).
- any other function that names a KPI table and returns a zone-less timestamp: adoption refuses,
  naming it and what the DBA should do; nothing is changed.
- every function of the platform that can be called without arguments is called once more
  before the commit (inside a savepoint, rolled back): if one fails, nothing is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from kpictl import kpis
from kpictl.db import kpi_rules as rules
from kpictl.errors import CommandFailed
from kpictl.services.adoption.steps import KPI_TABLES, MATERIALIZED_VIEWS, Step

KPI_RELATIONS = KPI_TABLES + MATERIALIZED_VIEWS
TRIGGER_FUNCTION = "create_run_kpi_snapshot"
FRESHNESS_FUNCTION = "get_kpi_freshness"
ZONELESS = "timestamp without time zone"

# The platform's functions that adoption checks by name even when they do not read a KPI table.
KNOWN = ("refresh_kpi_materialized_views", FRESHNESS_FUNCTION, "calculate_steering_accuracy")


@dataclass(frozen=True)
class PlatformFunction:
    signature: str  # regprocedure text, e.g. get_kpi_freshness(character varying)
    name: str
    call_name: str  # regproc text: schema-qualified when outside the search path
    definition: str  # pg_get_functiondef
    result: str  # pg_get_function_result
    out_columns: tuple[tuple[str, str], ...]  # (name, type) of a TABLE/OUT result
    returns_set: bool
    callable_bare: bool  # every argument has a default
    reads_kpi_tables: bool


@dataclass
class FunctionPlan:
    statements: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # statements run in a savepoint at the end


_FUNCTIONS = text(
    """
SELECT p.oid::regprocedure::text AS signature, p.proname AS name, p.oid::regproc::text AS call_name,
       pg_get_functiondef(p.oid) AS definition, pg_get_function_result(p.oid) AS result,
       p.proretset AS returns_set, p.pronargdefaults = p.pronargs AS callable_bare,
       ARRAY(SELECT format('%s %s', a.name, format_type(a.type, NULL))
             FROM unnest(p.proargnames, p.proallargtypes, p.proargmodes::text[])
                  WITH ORDINALITY AS a(name, type, mode, n)
             WHERE a.mode IN ('o', 't', 'b') ORDER BY a.n) AS out_columns,
       p.prosrc ~* CAST(:pattern AS text) AS reads_kpi_tables
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND p.prokind = 'f'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
  AND (p.prosrc ~* CAST(:pattern AS text) OR p.proname = ANY(CAST(:known AS text[])))
ORDER BY 1
"""
)


def platform_functions(connection: Connection) -> list[PlatformFunction]:
    """Functions outside the system schemas and extensions that name a KPI table or view, and
    the platform's known functions."""
    rows = connection.execute(
        _FUNCTIONS,
        {"pattern": r"\m(" + "|".join(KPI_RELATIONS) + r")\M", "known": list(KNOWN)},
    ).mappings()
    functions = []
    for row in rows:
        columns = tuple(tuple(column.split(" ", 1)) for column in row["out_columns"])
        functions.append(
            PlatformFunction(
                signature=row["signature"],
                name=row["name"],
                call_name=row["call_name"],
                definition=row["definition"],
                result=row["result"],
                out_columns=columns,
                returns_set=row["returns_set"],
                callable_bare=row["callable_bare"],
                reads_kpi_tables=row["reads_kpi_tables"],
            )
        )
    return functions


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _header(definition: str) -> str:
    """The CREATE OR REPLACE line and attributes of a function (SECURITY DEFINER, SET ...,
    volatility kept), its language made plpgsql, without its body."""
    lines = []
    for line in definition.splitlines():
        if line.startswith("AS ") or line.startswith("BEGIN ATOMIC"):
            break
        if line.strip().startswith("LANGUAGE "):
            continue
        lines.append(line)
    lines.append(" LANGUAGE plpgsql")
    return "\n".join(lines)


def trigger_body(started_zoneless: bool, completed_zoneless: bool, zone: str) -> str:
    """The replacement body of create_run_kpi_snapshot(): the platform's transition (into a
    terminal status), kpictl's terminal-run rule (docs/spec/pipeline.md §3, with finite
    timestamps) and kpictl's run_duration row (its duration and unit), all from kpi_rules."""
    started = rules.at_source_zone("NEW.started_at", started_zoneless, _quote(zone))
    completed = rules.at_source_zone("NEW.completed_at", completed_zoneless, _quote(zone))
    duration = kpis.BY_NAME["run_duration"]
    return f"""
AS $kpictl$
BEGIN
  IF {rules.terminal_status("NEW")} AND OLD.status NOT IN {rules.TERMINAL_STATUS_LIST}
     AND {rules.usable_timestamps("NEW")} THEN
    INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, metadata,
                               calculated_at, period_start, period_end)
    VALUES ({_quote(duration.name)}, {_quote(duration.version)}, 'run', NEW.id,
            {rules.duration_ms(started, completed)}, {rules.unit(duration.name)}, NULL,
            now(), {started}, {completed}),
           ('run_success', {_quote(duration.version)}, 'run', NEW.id,
            CASE WHEN NEW.status = 'completed' THEN 1 ELSE 0 END, 'boolean', NULL,
            now(), {started}, {completed})
    ON CONFLICT ON CONSTRAINT uq_kpi_snapshots_key DO NOTHING;
  END IF;
  RETURN NEW;
END
$kpictl$"""


def _freshness_expression(column: str, type_: str, zone: str) -> str | None:
    newest = "max(ks.calculated_at)"
    if column == "kpi_name":
        return f"CAST(ks.kpi_name AS {type_})"
    if column == "freshness_seconds":
        return f"CAST(extract(epoch FROM now() - {newest}) AS {type_})"
    if column == "last_calculated_at":
        value = rules.at_source_zone(newest, type_ == ZONELESS, _quote(zone))
        return f"CAST({value} AS {type_})"
    return None


def freshness_body(function: PlatformFunction, zone: str) -> str:
    """get_kpi_freshness's body for its declared result columns, in their order."""
    expressions = []
    for column, type_ in function.out_columns:
        expression = _freshness_expression(column, type_, zone)
        if expression is None:
            raise _refusal(
                function,
                f"its result column {column!r} is not one kpictl knows how to compute",
            )
        expressions.append(expression)
    return f"""
AS $kpictl$
BEGIN
  RETURN QUERY
  SELECT {", ".join(expressions)}
  FROM kpi_snapshots ks
  WHERE ($1 IS NULL OR ks.kpi_name = $1) AND ks.level = 'factory'
  GROUP BY ks.kpi_name;
END
$kpictl$"""


def _refusal(function: PlatformFunction, why: str) -> CommandFailed:
    return CommandFailed(
        f"cannot adopt: function {function.signature} reads the KPI tables and {why}; it would "
        "fail once their timestamp columns are timestamptz. Nothing was changed.",
        hint=f"drop {function.signature} (or redefine it to convert, e.g. "
        "`max(calculated_at) AT TIME ZONE 'UTC'` is zone-less again), adopt, then create it "
        "again; `kpictl migrate --adopt --sql` shows what adoption does",
    )


def _check(function: PlatformFunction) -> str:
    call = f"{function.call_name}()"
    if function.returns_set or function.out_columns:
        return f"SELECT count(*) FROM {call}"
    return f"SELECT {call}"


def plan_functions(
    connection: Connection, started_zoneless: bool, completed_zoneless: bool, zone: str
) -> FunctionPlan:
    plan = FunctionPlan()
    for function in platform_functions(connection):
        if function.result == "trigger":
            if function.name == TRIGGER_FUNCTION:
                plan.statements.append(
                    _header(function.definition)
                    + trigger_body(started_zoneless, completed_zoneless, zone)
                )
                plan.replaced.append(
                    f"{function.signature} (kpictl's run_duration row, unit ms; "
                    "ON CONFLICT DO NOTHING; nothing for an invalid run)"
                )
            continue
        if function.name == FRESHNESS_FUNCTION and function.out_columns:
            plan.statements.append(_header(function.definition) + freshness_body(function, zone))
            plan.replaced.append(
                f"{function.signature} (same columns, order and types; timestamptz inside)"
            )
        elif function.reads_kpi_tables and ZONELESS in function.result:
            raise _refusal(function, f"returns {function.result}")
        if function.callable_bare:
            plan.checks.append(_check(function))
    return plan


def describe(plan: FunctionPlan) -> str:
    return "replace the platform's " + " and ".join(plan.replaced) if plan.replaced else ""


def functions_steps(connection: Connection, zone: str) -> tuple[Step, Step]:
    """(replace the platform's functions that the conversion would break, call every platform
    function once more before the commit)."""
    from kpictl.services.pipeline.kpi_sql import SourceClock

    clock = SourceClock.detect(connection)
    functions = plan_functions(connection, clock.started_zoneless, clock.completed_zoneless, zone)
    replace = Step("functions", describe(functions))
    for statement in functions.statements:
        replace.add(statement)
    check = Step("check", "")
    for statement in functions.checks:
        check.add(statement)
    if functions.checks:
        check.summary = "check that the platform's functions still run: " + ", ".join(
            statement.removeprefix("SELECT count(*) FROM ").removeprefix("SELECT ")
            for statement in functions.checks
        )
    return replace, check
