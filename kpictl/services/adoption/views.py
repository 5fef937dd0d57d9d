"""Views during adoption: the platform's views over the KPI tables are saved with their
definitions, owners, grants and comments, dropped, and recreated; AFU-9's materialized views
are replaced by kpictl's (same names, the old ones' owners and grants).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from kpictl.db import dependent_views as saved
from kpictl.db import kpi_views
from kpictl.errors import CommandFailed
from kpictl.services.adoption.steps import KPI_TABLES, MATERIALIZED_VIEWS, Step


def dependent_views(connection: Connection) -> list[dict[str, Any]]:
    """Views over the KPI tables or the old materialized views, recursively, shallowest first."""
    views = saved.dependent_views(connection, KPI_TABLES + MATERIALIZED_VIEWS)
    for view in views:
        if view["relkind"] != "v" or view["has_triggers"] or view["has_rules"]:
            raise CommandFailed(
                f"cannot adopt: {view['name']} depends on the KPI tables and is a materialized "
                "view or has triggers or rules, which adoption does not recreate. Drop it, adopt, "
                "and create it again. Nothing was changed."
            )
    return views


def materialized_views(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(
        text(
            saved.RELATION_FACTS + " WHERE c.oid IN (SELECT to_regclass(name) FROM unnest("
            "CAST(:names AS text[])) name) ORDER BY c.relname"
        ),
        {"names": list(MATERIALIZED_VIEWS)},
    ).mappings()
    return [dict(row) for row in rows]


def _restore(step: Step, kind: str, facts: dict[str, Any], name: str) -> None:
    """Owner, grants and comments of a recreated view, as they were."""
    for statement in saved.restore_statements(kind, facts, name):
        step.add(statement)


def recreate_views_step(views: list[dict[str, Any]]) -> Step:
    step = Step(
        "recreate-views",
        f"recreate {', '.join(view['name'] for view in views)} with their definitions, owners, "
        "grants and comments",
    )
    for view in views:
        for statement in saved.create_view_statements(view):
            step.add(statement)
    return step


def _revision_module(revision: str) -> Any:
    from kpictl.db.migrations import revision_module

    return revision_module(revision)


def materialized_view_step(old_views: list[dict[str, Any]]) -> Step:
    pipeline = _revision_module("0002")
    step = Step(
        "materialized-views",
        "create kpictl's mv_factory_kpis_24h and mv_product_kpis_7d (same names, real data)"
        + (", keeping the old ones' owners and grants" if old_views else ""),
    )
    # revision 0002's views (the adopted state is 0002's; the later revisions recreate them)
    step.add(pipeline.FACTORY_VIEW)
    step.add(kpi_views.UNIQUE_INDEXES["mv_factory_kpis_24h"][1])
    step.add(pipeline.PRODUCT_VIEW)
    step.add(kpi_views.UNIQUE_INDEXES["mv_product_kpis_7d"][1])
    for view in old_views:
        _restore(step, "MATERIALIZED VIEW", view, view["name"])
    return step
