"""Record when each finder last ran over every item

A finder now reruns over the items written since its last run, and only now
and then over every item. `whole_refreshed_at` keeps the time of the last
run over every item, from which the maximum age counts. Existing runs were
all whole runs, so they take their `refreshed_at`. `whole_claimed_until`
lets one server process claim the next such run while the others keep
rerunning changed items only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 04:44:27.986013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('finder_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('whole_refreshed_at', store.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('whole_claimed_until', store.types.UTCDateTime(), nullable=True))
    op.execute("UPDATE finder_run SET whole_refreshed_at = refreshed_at")


def downgrade() -> None:
    with op.batch_alter_table('finder_run', schema=None) as batch_op:
        batch_op.drop_column('whole_claimed_until')
        batch_op.drop_column('whole_refreshed_at')
