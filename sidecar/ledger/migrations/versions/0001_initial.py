"""The first ledger schema: runs, observations, decisions, actions, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Hand-written and portable (SQLite, PostgreSQL, MariaDB/MySQL): no autogenerate, no
dialect-specific SQL. Every constraint and index is named so later migrations can address it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sidecar.ledger.migrations.portable import MYSQL, utc_datetime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("started_at", utc_datetime(), nullable=False),
        sa.Column("finished_at", utc_datetime(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("cloudstack_version", sa.String(64), nullable=False),
        sa.Column("sidecar_version", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        **MYSQL,
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("decision_id", sa.String(128), nullable=False),
        sa.Column("first_run_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", utc_datetime(), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("canonical", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("kind", "decision_id", name="uq_decisions_kind_decision_id"),
        sa.ForeignKeyConstraint(["first_run_id"], ["runs.id"], name="fk_decisions_first_run_id"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_decisions_run_id"),
        **MYSQL,
    )
    op.create_index("ix_decisions_canonical", "decisions", ["canonical"])
    op.create_index("ix_decisions_updated_at", "decisions", ["updated_at"])

    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(96), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("canonical", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc_datetime(), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
        sa.UniqueConstraint("key", name="uq_actions_key"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_actions_run_id"),
        **MYSQL,
    )
    op.create_index("ix_actions_alert_id", "actions", ["alert_id"])
    op.create_index("ix_actions_state", "actions", ["state"])
    op.create_index("ix_actions_group_id", "actions", ["group_id"])
    op.create_index("ix_actions_updated_at", "actions", ["updated_at"])

    op.create_table(
        "host_states",
        sa.Column("host_id", sa.String(64), nullable=False),
        sa.Column("host_name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("hastate", sa.String(32), nullable=False),
        sa.Column("since", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("host_id", name="pk_host_states"),
        **MYSQL,
    )

    op.create_table(
        "host_observations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host_id", sa.String(64), nullable=False),
        sa.Column("host_name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("hastate", sa.String(32), nullable=False),
        sa.Column("previous_state", sa.String(32), nullable=False),
        sa.Column("previous_hastate", sa.String(32), nullable=False),
        sa.Column("observed_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_host_observations"),
        **MYSQL,
    )
    op.create_index("ix_host_observations_host_id", "host_observations", ["host_id"])
    op.create_index("ix_host_observations_observed_at", "host_observations", ["observed_at"])

    op.create_table(
        "alert_observations",
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sent", utc_datetime(), nullable=True),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("first_seen", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alert_observations"),
        **MYSQL,
    )
    op.create_index("ix_alert_observations_first_seen", "alert_observations", ["first_seen"])

    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", utc_datetime(), nullable=False),
        sa.Column("renewed_at", utc_datetime(), nullable=False),
        sa.Column("expires_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
        **MYSQL,
    )


def downgrade() -> None:
    for name in (
        "leases",
        "alert_observations",
        "host_observations",
        "host_states",
        "actions",
        "decisions",
        "runs",
    ):
        op.drop_table(name)
