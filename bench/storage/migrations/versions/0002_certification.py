"""Certification: a result row per metric *and radius*, its cost per prediction and details, certificates.

A certify job reports certified accuracy at many radii, so ``results`` is unique per (job_key, metric,
epsilon) instead of (job_key, metric); no existing row breaks the new rule, since it is the old one refined.
Existing rows keep NULL ``cost_per_prediction`` and ``details``: what they cost was never recorded.

SQLite cannot alter a constraint in place, so ``results`` is rebuilt in batch mode (copied into a new table
with the new schema, rows and indexes included). Revision 0001 left its unique constraint unnamed; the naming
convention gives the reflected one a name, so it can be dropped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Names the constraints 0001 left unnamed, as reflected from the database.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}
OLD_UNIQUE = "uq_results_job_key_metric"
NEW_UNIQUE = "uq_results_job_metric_epsilon"


def upgrade() -> None:
    with op.batch_alter_table("results", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("cost_per_prediction", sa.Integer, nullable=True))
        batch.add_column(sa.Column("details", sa.JSON, nullable=True))
        batch.drop_constraint(OLD_UNIQUE, type_="unique")
        batch.create_unique_constraint(NEW_UNIQUE, ["job_key", "metric", "epsilon"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_key", sa.String(64), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("test_index", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("prediction", sa.Integer, nullable=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("p_lower", sa.Float, nullable=False),
        sa.Column("radius", sa.Float, nullable=False),
        sa.Column("radius_pixel", sa.Float, nullable=False),
        sa.UniqueConstraint("job_key", "position"),
    )


def downgrade() -> None:
    """Back to 0001; fails where a job has rows at several radii, which 0001 cannot hold."""
    op.drop_table("certificates")
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint(NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(OLD_UNIQUE, ["job_key", "metric"])
        batch.drop_column("details")
        batch.drop_column("cost_per_prediction")
