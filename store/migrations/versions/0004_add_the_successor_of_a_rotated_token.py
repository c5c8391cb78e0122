"""Add the successor of a rotated token

`token.replaced_by` names the token that a rotation issued in place of this
one, so a token is rotated at most once. Existing tokens get NULL, as a token
never rotated does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 02:35:46.658866
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaced_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_token_replaced_by_token"), "token", ["replaced_by"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_token_replaced_by_token"), type_="foreignkey")
        batch_op.drop_column("replaced_by")
