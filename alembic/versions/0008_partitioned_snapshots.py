"""`kpi_snapshots` partitioned: LIST by level, then RANGE by `period_end` (a UTC day per run
partition, a month per product and factory partition, a default partition per level).

The table is converted in place on a live database (`kpictl/db/snapshot_conversion.py`): the
new table is filled next to the old one in committed batches while a trigger mirrors the
platform's writes, the rows of each level are counted in both under a SHARE lock (readers go on),
and the swap itself (drop, rename, the old table's owner, grants and comment, the views over it
recreated as they were) takes one short ACCESS EXCLUSIVE lock. The primary key becomes (id,
level, period_end): a partitioned table's keys must hold its partition keys; `id` stays unique
in practice (gen_random_uuid()) and the key of docs/spec/pipeline.md §2 is unchanged.

A conversion stopped half-way (the process or its connection ended during the copy) leaves
the old table whole; running the revision again discards the half-built table and starts over.

Downgrade converts back to one table, the same way. `migrate --sql` prints the conversion as
one transaction (create, copy, swap), for a DBA who stops the writers first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from sqlalchemy import text

from alembic import context, op
from kpictl.db import partitions
from kpictl.db import snapshot_conversion as conversion

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _convert(partitioned: bool) -> None:
    shape = conversion.Shape(partitioned=partitioned)
    if context.is_offline_mode():
        for statement in conversion.offline_statements(shape):
            op.execute(statement)
        return
    bind = op.get_bind()
    if partitions.is_partitioned(bind) == partitioned:
        return
    now = bind.execute(text("SELECT now()")).scalar_one()
    conversion.prepare(bind, shape, now)
    with op.get_context().autocommit_block():
        conversion.copy(bind)
    conversion.swap(bind, shape)


def upgrade() -> None:
    _convert(partitioned=True)


def downgrade() -> None:
    _convert(partitioned=False)
