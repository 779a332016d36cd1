"""Liveness: a run's heartbeat, process and host, and per-job leases for concurrent runs on one store.

Runs recorded before this revision keep NULL ``heartbeat_at``, ``pid`` and ``host``: a run among them
still marked running is judged by its start time alone. ``leases`` starts empty; a lease lives only while its
job runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime, nullable=True))
    op.add_column("runs", sa.Column("pid", sa.Integer, nullable=True))
    op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    op.create_table(
        "leases",
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    """Drops the columns in place (SQLite 3.35+) rather than in batch mode, whose copy-and-drop of ``runs``
    the foreign keys of ``jobs`` and ``results`` forbid."""
    op.drop_table("leases")
    for column in ("host", "pid", "heartbeat_at"):
        op.drop_column("runs", column)
