"""The last second-factor time step each user has used, so that a code works once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 11:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite has had DROP COLUMN since 3.35): a batch
# rebuild of `users` would have to drop a table that most others reference.
def upgrade() -> None:
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "totp_last_step")
