"""Index exception records by item and by supplier

A finder rerun over the items written since its last run reads and updates
only those items' records (supplier delays: those suppliers'), which without
these indexes meant reading every live record of the kind.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 05:25:14.808617
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('exception_record', schema=None) as batch_op:
        batch_op.create_index('ix_exception_item', ['workspace_id', 'item_id', 'kind'], unique=False)
        batch_op.create_index('ix_exception_supplier', ['workspace_id', 'supplier_id', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('exception_record', schema=None) as batch_op:
        batch_op.drop_index('ix_exception_supplier')
        batch_op.drop_index('ix_exception_item')
