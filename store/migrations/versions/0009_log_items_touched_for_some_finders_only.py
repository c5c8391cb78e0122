"""Log items touched for some finders only

A purchase-order draft changes the input of the low-stock finder alone, and
an external snapshot that of the mismatch finder alone. `kind_item_ids`
names such items per finder kind, so a draft or a sync batch no longer
reruns the other finders over its items. Existing rows touched their items
for every finder and get an empty mapping.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind_item_ids', sa.JSON(), nullable=True))
    op.execute("UPDATE change_log SET kind_item_ids = '{}'")
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.alter_column('kind_item_ids', existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.drop_column('kind_item_ids')
