"""Dialogue fields: call summary and disposition, turn slots and reply source.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("slots", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("reply_source", sa.String(16), nullable=False,
                                   server_default="flow"))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("reply_source")
        batch.drop_column("slots")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("summary")
