"""Drop three indexes on random ids that no query needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Every insert puts a random uuid or hash into each index at a random place; once the index
outgrows SQLite's page cache, each such insert reads and rewrites a page of its own. A
1,000,000-alert cleanup writes 276,000 intents and as many merge groups, and these three
indexes cost a fifth of that time (bench/results.md). None is needed:

- ``ix_actions_alert_id``: actions are looked up by ``key`` (``archive:<alert id>``), which
  has its own unique index.
- ``ix_actions_group_id`` and ``ix_decisions_canonical``: only ``ledger verify`` joins on
  them, and it now reaches actions through ``key`` and decisions through the unique
  ``(kind, decision_id)``.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_actions_alert_id", table_name="actions")
    op.drop_index("ix_actions_group_id", table_name="actions")
    op.drop_index("ix_decisions_canonical", table_name="decisions")


def downgrade() -> None:
    op.create_index("ix_decisions_canonical", "decisions", ["canonical"])
    op.create_index("ix_actions_group_id", "actions", ["group_id"])
    op.create_index("ix_actions_alert_id", "actions", ["alert_id"])
