"""Count the archiveAlerts attempts of each action; index alerts by their sent time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

``attempts`` shows how often an action was sent (a failed action may be retried by a later
run); existing rows get 0. The ``sent`` index serves ``newest_seen_alert`` (the service's
"stop at the last alert seen").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index("ix_alert_observations_sent", "alert_observations", ["sent"])


def downgrade() -> None:
    op.drop_index("ix_alert_observations_sent", table_name="alert_observations")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("attempts")
