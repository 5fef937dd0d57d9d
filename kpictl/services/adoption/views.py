"""Views during adoption: the platform's views over the KPI tables are saved with their
definitions, owners, grants and comments, dropped, and recreated; AFU-9's materialized views
are replaced by kpictl's (same names, the old ones' owners and grants).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from kpictl.db import kpi_views
from kpictl.errors import CommandFailed
from kpictl.services.adoption.steps import KPI_TABLES, MATERIALIZED_VIEWS, Step

_RELATION_FACTS = """
SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind,
       quote_ident(pg_get_userbyid(c.relowner)) AS owner,
       pg_get_viewdef(c.oid) AS definition,
       coalesce(array_to_string(ARRAY(
           SELECT opt FROM unnest(c.reloptions) opt WHERE opt NOT LIKE 'check_option=%'), ', '), '')
         AS options,
       (SELECT split_part(opt, '=', 2) FROM unnest(c.reloptions) opt
         WHERE opt LIKE 'check_option=%') AS check_option,
       quote_literal(obj_description(c.oid, 'pg_class')) AS comment,
       ARRAY(SELECT format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, a.attname,
                           col_description(c.oid, a.attnum))
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
               AND col_description(c.oid, a.attnum) IS NOT NULL ORDER BY a.attnum) AS column_comments,
       ARRAY(SELECT format('GRANT %s ON %I.%I TO %s%s', acl.privilege_type, n.nspname, c.relname,
                           CASE WHEN acl.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(acl.grantee)) END,
                           CASE WHEN acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM aclexplode(c.relacl) WITH ORDINALITY AS acl(grantor, grantee, privilege_type,
                                                              is_grantable, n)
             WHERE acl.grantee <> c.relowner ORDER BY acl.n) AS grants,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid) AS has_triggers,
       EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
         AS has_rules
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def dependent_views(connection: Connection) -> list[dict[str, Any]]:
    """Views over the KPI tables or the old materialized views, recursively, shallowest first."""
    rows = connection.execute(
        text(
            "WITH RECURSIVE roots AS (SELECT to_regclass(name) AS oid FROM unnest("
            "CAST(:roots AS text[])) name WHERE to_regclass(name) IS NOT NULL), "
            "dependents(oid, depth) AS ("
            "  SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "  WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
            "    AND d.refobjid IN (SELECT oid FROM roots) AND r.ev_class <> d.refobjid "
            "  UNION ALL "
            "  SELECT r.ev_class, dependents.depth + 1 FROM dependents "
            "  JOIN pg_depend d ON d.refobjid = dependents.oid AND d.classid = 'pg_rewrite'::regclass "
            "    AND d.refclassid = 'pg_class'::regclass "
            "  JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> dependents.oid) "
            "SELECT oid, max(depth) AS depth FROM dependents "
            "WHERE oid NOT IN (SELECT oid FROM roots) GROUP BY oid"
        ),
        {"roots": list(KPI_TABLES + MATERIALIZED_VIEWS)},
    ).all()
    depth = {row.oid: row.depth for row in rows}
    if not depth:
        return []
    facts = connection.execute(
        text(_RELATION_FACTS + " WHERE c.oid = ANY(CAST(:oids AS oid[]))"), {"oids": list(depth)}
    ).mappings()
    views = sorted(
        (dict(row) for row in facts), key=lambda view: (depth[view["oid"]], view["name"])
    )
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
            _RELATION_FACTS + " WHERE c.oid IN (SELECT to_regclass(name) FROM unnest("
            "CAST(:names AS text[])) name) ORDER BY c.relname"
        ),
        {"names": list(MATERIALIZED_VIEWS)},
    ).mappings()
    return [dict(row) for row in rows]


def _restore(step: Step, kind: str, facts: dict[str, Any], name: str) -> None:
    """Owner, grants and comments of a recreated view, as they were."""
    step.add(f"ALTER {kind} {name} OWNER TO {facts['owner']}")
    for grant in facts["grants"]:
        step.add(grant)
    if facts["comment"]:
        step.add(f"COMMENT ON {kind} {name} IS {facts['comment']}")
    for comment in facts["column_comments"]:
        step.add(comment)


def recreate_views_step(views: list[dict[str, Any]]) -> Step:
    step = Step(
        "recreate-views",
        f"recreate {', '.join(view['name'] for view in views)} with their definitions, owners, "
        "grants and comments",
    )
    for view in views:
        options = f" WITH ({view['options']})" if view["options"] else ""
        check = f" WITH {view['check_option'].upper()} CHECK OPTION" if view["check_option"] else ""
        definition = view["definition"].strip().rstrip(";")
        step.add(f"CREATE VIEW {view['name']}{options} AS\n{definition}{check}")
        _restore(step, "VIEW", view, view["name"])
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
