"""Lease start: when a run took its lease on a job, so ``bench status`` can say how long the job has run.

Leases live only while their jobs run, so a store upgraded while a run of an older release holds some keeps
NULL there: that job's status gives its lease's expiry alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leases", sa.Column("taken_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    """In place (SQLite 3.35+), as 0003's columns are dropped."""
    op.drop_column("leases", "taken_at")
