"""Calibrations hold a review threshold per age-gap band where the data could set one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 21:50:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# Nullable, no default: calibrations stored before this have no per-band thresholds, which the
# service reads as "every gap uses the global threshold".
def upgrade() -> None:
    op.add_column("calibrations", sa.Column("gap_thresholds", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("calibrations", "gap_thresholds")
