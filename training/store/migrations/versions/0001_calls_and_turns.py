"""Calls and turns.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("caller_audio_sha256", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
    )
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("caller_start_s", sa.Float(), nullable=False),
        sa.Column("caller_end_s", sa.Float(), nullable=False),
        sa.Column("caller_audio_sha256", sa.String(64), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("asr_confidence", sa.Float(), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("intent_confidence", sa.Float(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("reply_audio_sha256", sa.String(64)),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.UniqueConstraint("call_id", "index"),
    )
    op.create_index("ix_turns_call_id", "turns", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_turns_call_id", table_name="turns")
    op.drop_table("turns")
    op.drop_table("calls")
