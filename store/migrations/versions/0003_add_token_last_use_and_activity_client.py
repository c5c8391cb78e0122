"""Add token last use and the activity event's client and acted-for user

Existing events get '' for both new text columns through a server default,
which is removed again so the schema matches the models. Existing tokens get
NULL for last_used_at, as a token never used does.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 01:54:27.192578
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.types

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activity_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("on_behalf_of", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("client_name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False, server_default="")
        )
    with op.batch_alter_table("activity_event", schema=None) as batch_op:
        batch_op.alter_column("on_behalf_of", server_default=None)
        batch_op.alter_column("client_name", server_default=None)

    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", store.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")

    with op.batch_alter_table("activity_event", schema=None) as batch_op:
        batch_op.drop_column("client_name")
        batch_op.drop_column("on_behalf_of")
