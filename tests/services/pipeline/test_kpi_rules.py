"""Each KPI rule is written once, in kpictl/db/kpi_rules.py (issue 13):

- no module of the package spells a rule out again (a grep for each rule's distinctive text);
- the units in the SQL come from the KPI registry (kpictl/kpis.py), never from a literal;
- the revisions that create the materialized views ship exactly the views' current definition
  (kpictl/db/kpi_views.py, built from the rules): revisions are history and keep their frozen
  SQL, and this test is what keeps the newest of them equal to the rules;
- the rules modules import nothing from kpictl's services (revisions could import them).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from kpictl import kpis
from kpictl.db import kpi_rules, kpi_views
from kpictl.db.migrations import alembic_config
from kpictl.services.adoption import functions
from kpictl.services.pipeline import hourly_parts, kpi_sql, run_level_sql

PACKAGE = Path(kpi_rules.__file__).resolve().parents[1]
# the rules, and the registry (whose descriptions say them in words)
ALLOWED = {Path(kpi_rules.__file__).resolve(), Path(kpis.__file__).resolve()}

# rule -> a regular expression matching the text that spells it out (in SQL, as kpictl writes it)
SPELLED_OUT = {
    "terminal statuses": r"IN\s*\(\s*'completed',\s*'failed'\s*\)",
    "finite timestamps of a terminal run": r"isfinite\(",
    "timestamps in order": r"completed_at\s*>=\s*\S*started_at",
    "duration in ms": r"extract\(epoch FROM [^)]*completed[^)]*\)\s*\*\s*1000",
    "throughput (runs per day)": r"86400\.0",
    "rates in percent": r"100\.0\s*\*",
    "decided verdicts": r"'accepted',\s*'overridden',\s*'escalated'",
    "verdict counts": r"outcome\s*=\s*'(accepted|overridden|escalated)'",
    "tool call succeeded": r"\berror IS NULL",
    "token usage": r"total_tokens::numeric|coalesce\(\w+\.prompt_tokens",
    "UTC hours": r"date_bin\(\s*'1 hour'",
    "additive parts in metadata": r"'terminal_runs',|'duration_sum_ms',|'decided',",
    "a unit literal": r"'(" + "|".join(sorted({kpi.unit for kpi in kpis.KPIS})) + r")'",
}


def _package_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.resolve() not in ALLOWED)


@pytest.mark.parametrize("rule", sorted(SPELLED_OUT))
def test_no_rule_is_spelled_out_outside_the_rules_module(rule):
    pattern = re.compile(SPELLED_OUT[rule])
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in _package_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert found == [], (
        f"the rule '{rule}' is written again outside kpictl/db/kpi_rules.py; use its fragment:\n"
        + "\n".join(found)
    )


def test_the_grep_finds_each_rule_in_the_rules_module():
    """The patterns above are not vacuous: each matches the SQL the rules produce."""
    produced = "\n".join(
        [
            kpi_rules.terminal_run("e"),
            kpi_rules.duration_ms("e.started_at", "e.completed_at"),
            kpi_rules.runs_per_day("n", "s"),
            kpi_rules.percent("a", "b"),
            kpi_rules.decided("v"),
            kpi_rules.verdict_parts("v"),
            kpi_rules.tool_call_succeeded("t"),
            kpi_rules.agent_run_tokens("a"),
            kpi_rules.hour_of("x"),
            kpi_rules.run_parts_metadata("p"),
            kpi_rules.verdict_parts_metadata("v"),
            kpi_rules.unit("mtti"),
        ]
    )
    for rule, pattern in SPELLED_OUT.items():
        assert re.search(pattern, produced), rule


# --- units come from the registry ---------------------------------------------------------------


def _statements_by_kpi() -> dict[str, str]:
    """KPI name -> the SQL that writes its snapshots (the adoption's trigger: run_duration)."""
    clock = kpi_sql.SourceClock(
        started_zoneless=True, completed_zoneless=False, decided_zoneless=True
    )
    chunk = run_level_sql.run_level_chunk(clock, only_new=True, after_cursor=False)
    run_duration, token_usage, tool_calls = (statement.text for statement in chunk.writes)
    product = kpi_sql.product_level().text
    factory = kpi_sql.factory_level(clock).text
    return {
        "run_duration": run_duration + functions.trigger_body(True, False, "UTC"),
        "token_usage": token_usage,
        "tool_call_success_rate": tool_calls,
        **{kpi.name: product for kpi in kpis.at_level("product")},
        **{kpi.name: factory for kpi in kpis.at_level("factory")},
    }


def test_the_units_in_sql_come_from_the_registry(monkeypatch):
    original = {kpi.name: kpi.unit for kpi in kpis.KPIS}
    assert set(_statements_by_kpi()) == set(original)
    renamed = {
        name: dataclasses.replace(kpi, unit=f"unit_of_{name}") for name, kpi in kpis.BY_NAME.items()
    }
    monkeypatch.setattr(kpis, "BY_NAME", renamed)
    statements = _statements_by_kpi()
    for name, sql in statements.items():
        assert f"'unit_of_{name}'" in sql, name
    every_statement = "\n".join(statements.values())
    for unit in set(original.values()):
        assert f"'{unit}'" not in every_statement, unit


def test_a_unit_must_be_a_plain_word_to_be_formatted_into_sql(monkeypatch):
    hostile = dataclasses.replace(kpis.BY_NAME["mtti"], unit="ms'); DROP TABLE x; --")
    monkeypatch.setattr(kpis, "BY_NAME", {**kpis.BY_NAME, "mtti": hostile})
    with pytest.raises(ValueError, match="plain lower-case word"):
        kpi_rules.unit("mtti")


def test_every_snapshot_carries_the_registry_unit(engine):
    from datetime import timedelta

    from sqlalchemy import text

    from kpictl.services.jobs.stop import StopRequest
    from kpictl.services.pipeline import run as pipeline
    from kpictl.services.pipeline import steps
    from kpictl.services.pipeline.periods import Period
    from tests import factories as f

    with engine.begin() as conn:
        repo = f.repository(conn)
        run = f.execution(conn, repo, "completed", f.at(1), f.at(2))
        f.execution(conn, repo, "failed", f.at(3), f.at(3.5))
        f.agent_run(conn, run, total_tokens=10)
        f.tool_call(conn, run)
        f.verdict(conn, None, "accepted", f.at(4))
    period = Period(f.at(0), f.at(0) + timedelta(hours=24))
    pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(), stop=StopRequest()
    )
    with engine.connect() as conn:
        units = conn.execute(text("SELECT DISTINCT kpi_name, unit FROM kpi_snapshots")).all()
    assert dict(units) == {kpi.name: kpi.unit for kpi in kpis.KPIS}


# --- the views: their revision ships the current definition -------------------------------------


def _normalized(sql: str) -> str:
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


def _newest_revision_with(attribute: str):
    script = ScriptDirectory.from_config(alembic_config())
    for revision in script.iterate_revisions("head", "base"):  # newest first
        if hasattr(revision.module, attribute):
            return revision
    raise AssertionError(f"no revision defines {attribute}")


@pytest.mark.parametrize(
    ("attribute", "current"),
    [
        ("FACTORY_VIEW", kpi_views.FACTORY_VIEW),
        ("PRODUCT_VIEW", kpi_views.PRODUCT_VIEW),
        ("SPANS", kpi_views.SPANS),
    ],
)
def test_the_newest_view_revision_ships_the_current_definition(attribute, current):
    revision = _newest_revision_with(attribute)
    assert _normalized(getattr(revision.module, attribute)) == _normalized(current), (
        f"revision {revision.revision}'s {attribute} differs from kpictl/db/kpi_views.py: a rule "
        "or a view changed. Revisions are history: leave that revision as it is and add one that "
        "recreates the views with the new SQL (`python -m kpictl.db.kpi_views` prints it); see "
        "docs/ARCHITECTURE.md, 'How to add a KPI / a revision'."
    )


def test_the_views_window_is_the_one_the_hourly_parts_keep():
    assert hourly_parts.VIEW_SPAN.total_seconds() == kpi_views.PRODUCT_VIEW_HOURS * 3600
    assert f"interval '{kpi_views.PRODUCT_VIEW_HOURS} hours'" in kpi_views.PRODUCT_VIEW
    assert kpi_sql.MATERIALIZED_VIEWS == kpi_views.MATERIALIZED_VIEWS


def test_the_rules_import_nothing_from_the_services():
    """kpictl/db/kpi_rules.py and kpi_views.py pull in no service (a fresh interpreter: this
    test process has imported them all)."""
    code = (
        "import sys, kpictl.db.kpi_rules, kpictl.db.kpi_views; "
        "print([m for m in sys.modules if m.startswith('kpictl.services')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
