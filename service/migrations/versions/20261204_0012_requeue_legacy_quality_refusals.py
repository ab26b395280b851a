"""Photos refused for their quality by an earlier version are processed again.

Before quality became a flag (a face below a gate is enrolled and flagged, docs/accuracy.md),
the worker refused such record photos with status `low_quality`; their encrypted files and keys
were kept. Each is a child the gallery cannot find, so they go back to `queued` with a fresh
attempt count: the reaper sends every queued photo to the workers within a minute, and they are
enrolled under today's rule. Only photos of active records whose file and key are still stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 10:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE photos SET status = 'queued', status_message = NULL, attempts = 0, claimed_at = NULL, "
            "processed_at = NULL "
            "WHERE status = 'low_quality' AND storage_key IS NOT NULL AND wrapped_key IS NOT NULL "
            "AND record_id IN (SELECT id FROM records WHERE status = 'active')"
        )
    )


def downgrade() -> None:
    # Nothing to undo: a photo processed again has today's outcome, which the older schema can hold.
    pass
