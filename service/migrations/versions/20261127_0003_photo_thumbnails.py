"""Encrypted thumbnails of photos, under their own data keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:55:44.453580
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thumbnail_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("thumbnail_wrapped_key", sa.LargeBinary(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_photos_thumbnail_key"), ["thumbnail_key"])


def downgrade() -> None:
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_photos_thumbnail_key"), type_="unique")
        batch_op.drop_column("thumbnail_wrapped_key")
        batch_op.drop_column("thumbnail_key")
