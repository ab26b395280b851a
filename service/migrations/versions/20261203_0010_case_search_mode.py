"""A case's search mode (alerting or investigative, with its number of leads), and the mode
each candidate was found in.

Every existing case and candidate was searched the alerting way (the calibrated threshold
and top-k), which is what the server defaults say.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases, as in 0008: a batch rebuild of `cases` would have to
# drop a table that others reference.
def upgrade() -> None:
    op.add_column("cases", sa.Column("search_mode", sa.String(length=20), server_default="alerting", nullable=False))
    op.add_column("cases", sa.Column("candidate_limit", sa.Integer(), nullable=True))
    op.add_column(
        "candidates", sa.Column("search_mode", sa.String(length=20), server_default="alerting", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("candidates", "search_mode")
    op.drop_column("cases", "candidate_limit")
    op.drop_column("cases", "search_mode")
