"""Confirmed-match webhooks are retried: attempts, the next attempt's time, the last failure's code.

Deliveries that failed before this revision were never retried; they are given one
attempt and become due at once (their next attempt is their creation time), so the
retry schedule takes them over.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 13:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("webhook_next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("webhook_last_error", sa.String(length=30), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_notifications_webhook_next_attempt_at"), ["webhook_next_attempt_at"], unique=False
        )
    op.execute(
        "UPDATE notifications SET webhook_attempts = 1, webhook_next_attempt_at = created_at "
        "WHERE webhook_status = 'failed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_webhook_next_attempt_at"))
        batch_op.drop_column("webhook_last_error")
        batch_op.drop_column("webhook_next_attempt_at")
        batch_op.drop_column("webhook_attempts")
