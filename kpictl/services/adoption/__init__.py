"""Adopting a live AFU-9 database in place (docs/spec/adoption.md).

The AFU-9 control center created `kpi_snapshots` and `kpi_aggregation_jobs` (with the names
kpictl uses, in an older shape), two materialized views, four functions and a run trigger, and
reads them from its own views. Adoption turns these objects into the shape kpictl's revisions
0001 and 0002 would have created, in ONE transaction, and stamps the version table at 0002; the
normal upgrade then runs the later revisions. Nothing is dropped that holds data: rows are kept,
except exact duplicates on kpictl's uniqueness key (the newest `calculated_at` survives).

The work is a plan of SQL statements built from the live catalog (`plan.build_plan`): the same list
is printed by `migrate --adopt --sql` and executed by `migrate --adopt`, so what a DBA reviews is
what runs. Two things cannot run inside the transaction and follow its commit: the `kpictl_*`
source indexes (built CONCURRENTLY after the later revisions, those of head: 0009's covering
indexes replace two of 0002's; `schema.migrate.rebuild_source_indexes`) and the later revisions.
Both converge when re-run, and `kpictl migrate` re-checks the indexes.

Identifiers in the generated DDL are quoted by the server (`format('%I')`, `quote_literal`);
the only value written into DDL from outside, the source time zone, is first checked against
`pg_timezone_names`. Values of the rows written (job row, marker) are bound parameters.

Modules, in the order an adoption runs: `detect` (is there something to adopt), `plan` (every
step's SQL from the live catalog: `tables`, `views`, `functions`, `finish`, sharing the model of
`steps`), `run` (one transaction, then the source indexes).
"""
