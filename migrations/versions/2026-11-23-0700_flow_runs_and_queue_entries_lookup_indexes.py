"""index flow runs by contact and queue entries by conversation, both looked up on every inbound message

Revision ID: 8e2f4b6c1a90
Revises: 5c1e0a9d2b7f
Create Date: 2026-11-23 07:00:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8e2f4b6c1a90"
down_revision: str | None = "5c1e0a9d2b7f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("automation_flow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_automation_flow_runs_contact", ["contact_id", "status"], unique=False)
    with op.batch_alter_table("routing_queue_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_routing_queue_entries_conversation", ["conversation_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("routing_queue_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_queue_entries_conversation")
    with op.batch_alter_table("automation_flow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_automation_flow_runs_contact")
