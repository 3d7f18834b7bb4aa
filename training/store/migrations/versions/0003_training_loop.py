"""The training loop: redaction counts, annotations, datasets, runs, model versions, reports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("redactions", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turns.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("value", sa.JSON()),
        sa.Column("previous", sa.JSON()),
        sa.Column("confidence", sa.Float()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_annotations_turn_id", "annotations", ["turn_id"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.UniqueConstraint("name", "version"),
    )
    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id")),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output_dir", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("training_run_id", sa.String(36), sa.ForeignKey("training_runs.id")),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "verification_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("candidate_id", sa.Integer(), sa.ForeignKey("model_versions.id"),
                  nullable=False),
        sa.Column("baseline_id", sa.Integer(), sa.ForeignKey("model_versions.id")),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verification_reports_candidate_id", "verification_reports",
                    ["candidate_id"])


def downgrade() -> None:
    op.drop_index("ix_verification_reports_candidate_id", table_name="verification_reports")
    op.drop_table("verification_reports")
    op.drop_table("model_versions")
    op.drop_table("training_runs")
    op.drop_table("datasets")
    op.drop_index("ix_annotations_turn_id", table_name="annotations")
    op.drop_table("annotations")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("redactions")
