"""The active embedding model, re-embedding jobs and the photos they could not embed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 11:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reembed_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_model_id", sa.String(length=64), nullable=False),
        sa.Column("target_model_version", sa.String(length=64), nullable=False),
        sa.Column("source_model_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("batch_claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["finished_by_id"], ["users.id"], name=op.f("fk_reembed_jobs_finished_by_id_users")),
        sa.ForeignKeyConstraint(["started_by_id"], ["users.id"], name=op.f("fk_reembed_jobs_started_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reembed_jobs")),
    )
    with op.batch_alter_table("reembed_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reembed_jobs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_reembed_jobs_target_model_id"), ["target_model_id"], unique=False)

    op.create_table(
        "active_embedding_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["reembed_jobs.id"], name=op.f("fk_active_embedding_model_job_id_reembed_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_active_embedding_model")),
    )
    op.create_table(
        "reembed_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["reembed_jobs.id"], name=op.f("fk_reembed_failures_job_id_reembed_jobs")),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name=op.f("fk_reembed_failures_photo_id_photos")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reembed_failures")),
        sa.UniqueConstraint("job_id", "photo_id", name=op.f("uq_reembed_failures_job_id")),
    )
    with op.batch_alter_table("reembed_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reembed_failures_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reembed_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reembed_failures_job_id"))

    op.drop_table("reembed_failures")
    op.drop_table("active_embedding_model")
    with op.batch_alter_table("reembed_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reembed_jobs_target_model_id"))
        batch_op.drop_index(batch_op.f("ix_reembed_jobs_status"))

    op.drop_table("reembed_jobs")
