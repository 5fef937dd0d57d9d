"""history feature schema changes, if any (issue 4): none needed

The history's tables and its row-level security (enabled, forced, one policy) are created by
0001. The fill writes many tenants quickly without any extra policy, role or BYPASSRLS (see
docs/SECURITY.md), and reads the source tables with plain scans, so this revision is empty; it
stays in the chain so that later history changes have their place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
