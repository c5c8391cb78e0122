"""Add the change log of touched items

`change_log` records, for each value of a workspace's change counter, the
items whose finder inputs that write changed, or that it may have changed any.
Writes made before this revision have no row, which readers treat as "may have
changed everything".

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 04:03:52.182343
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.Column("everything", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_change_log_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("workspace_id", "version", name=op.f("pk_change_log")),
    )


def downgrade() -> None:
    op.drop_table("change_log")
