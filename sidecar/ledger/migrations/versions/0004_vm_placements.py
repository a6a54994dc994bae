"""Record where each VM ran: ``vm_placements``, one row per host change of a VM.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Hand-written and portable (SQLite, PostgreSQL, MariaDB/MySQL): no autogenerate, no
dialect-specific SQL; datetimes via ``portable.utc_datetime()`` (microseconds on MySQL too).

The planner attributes an "HA starting VM" restart to the failure of a host the VM ran on;
the API names no host in that alert, and listVirtualMachines tells only where a VM is now.
Every query is per VM and in time order (its latest placement, the one in effect at a
moment), hence the one index on ``(vm, since)``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sidecar.ledger.migrations.portable import MYSQL, utc_datetime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vm_placements",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("vm", sa.String(255), nullable=False),
        sa.Column("vm_id", sa.String(64), nullable=False),
        sa.Column("host_id", sa.String(64), nullable=False),
        sa.Column("since", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vm_placements"),
        **MYSQL,
    )
    op.create_index("ix_vm_placements_vm_since", "vm_placements", ["vm", "since"])


def downgrade() -> None:
    op.drop_index("ix_vm_placements_vm_since", table_name="vm_placements")
    op.drop_table("vm_placements")
