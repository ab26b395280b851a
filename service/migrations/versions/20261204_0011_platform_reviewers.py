"""Platform reviewers: a review may be made by operator staff, who belong to no organisation.

`reviews.reviewer_organisation_id` becomes nullable (None for a platform reviewer's review).
Every existing review was made by an organisation's reviewer, so nothing is rewritten.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 02:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


# SQLite cannot change a column's nullability in place: a batch rebuild of `reviews`, which no
# other table references, so the rebuild drops nothing that another table points at.
def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.alter_column("reviewer_organisation_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # A platform reviewer's review has no organisation to put back: refuse rather than lose it.
    if op.get_bind().execute(sa.text("SELECT count(*) FROM reviews WHERE reviewer_organisation_id IS NULL")).scalar():
        raise RuntimeError("Platform reviewers' reviews exist; they cannot be kept below revision 0011.")
    with op.batch_alter_table("reviews") as batch:
        batch.alter_column("reviewer_organisation_id", existing_type=sa.Integer(), nullable=False)
