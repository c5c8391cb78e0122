"""Add an index on external snapshots by item

`ix_snapshot_item` lets a mismatch run scoped to a few items read those items'
snapshots alone, instead of every current snapshot of the workspace.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 04:11:16.492139
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('external_snapshot', schema=None) as batch_op:
        batch_op.create_index('ix_snapshot_item', ['workspace_id', 'item_id', 'is_current'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('external_snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshot_item')
