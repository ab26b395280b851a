"""Calibrations (versioned per model) and published evaluation reports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("target_fmr", sa.Float(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.Column("achieved_fmr", sa.Float(), nullable=False),
        sa.Column("fnmr", sa.Float(), nullable=False),
        sa.Column("genuine_pairs", sa.Integer(), nullable=False),
        sa.Column("impostor_pairs", sa.Integer(), nullable=False),
        sa.Column("reliable", sa.Boolean(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name=op.f("fk_calibrations_created_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_calibrations_model_id")),
    )
    op.create_index(op.f("ix_calibrations_model_id"), "calibrations", ["model_id"])
    op.create_index(op.f("ix_calibrations_activated_at"), "calibrations", ["activated_at"])
    op.create_table(
        "evaluation_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("dataset_sha256", sa.String(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["published_by_id"], ["users.id"], name=op.f("fk_evaluation_reports_published_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_reports")),
    )
    op.create_index(op.f("ix_evaluation_reports_model_id"), "evaluation_reports", ["model_id"])
    op.create_index(op.f("ix_evaluation_reports_published_at"), "evaluation_reports", ["published_at"])


def downgrade() -> None:
    op.drop_table("evaluation_reports")
    op.drop_table("calibrations")
