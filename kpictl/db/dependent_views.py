"""Views that depend on a table, saved and recreated around a change that drops the table (the
adoption of an AFU-9 database, the partitioning of `kpi_snapshots`): each view's definition,
options, owner, grants and comments, read from the catalog, and the statements that put the view
back as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

RELATION_FACTS = """
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


def dependent_views(connection: Connection, roots: Sequence[str]) -> list[dict[str, Any]]:
    """The views and materialized views over the relations `roots`, recursively, shallowest
    first (create in this order, drop in the reverse), each with the facts of RELATION_FACTS."""
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
        {"roots": list(roots)},
    ).all()
    depth = {row.oid: row.depth for row in rows}
    if not depth:
        return []
    facts = connection.execute(
        text(RELATION_FACTS + " WHERE c.oid = ANY(CAST(:oids AS oid[]))"), {"oids": list(depth)}
    ).mappings()
    return sorted((dict(row) for row in facts), key=lambda view: (depth[view["oid"]], view["name"]))


def restore_statements(kind: str, facts: dict[str, Any], name: str) -> list[str]:
    """Owner, grants and comments of a recreated view (or table: `kind`), as they were."""
    statements = [f"ALTER {kind} {name} OWNER TO {facts['owner']}", *facts["grants"]]
    if facts["comment"]:
        statements.append(f"COMMENT ON {kind} {name} IS {facts['comment']}")
    return statements + list(facts["column_comments"])


def create_view_statements(view: dict[str, Any]) -> list[str]:
    """A plain view as it was: definition, options, check option, owner, grants, comments."""
    options = f" WITH ({view['options']})" if view["options"] else ""
    check = f" WITH {view['check_option'].upper()} CHECK OPTION" if view["check_option"] else ""
    definition = view["definition"].strip().rstrip(";")
    create = f"CREATE VIEW {view['name']}{options} AS\n{definition}{check}"
    return [create, *restore_statements("VIEW", view, view["name"])]
