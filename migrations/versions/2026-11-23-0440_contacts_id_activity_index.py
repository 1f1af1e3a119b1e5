"""contacts: covering index for segment counts' probes by id

Revision ID: 5c1e0a9d2b7f
Revises: a7cb57c92d43
Create Date: 2026-11-23 04:40:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5c1e0a9d2b7f"
down_revision: str | None = "a7cb57c92d43"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contacts_id_activity",
            ["id", "merged_into_id", "last_followed_at", "last_inbound_at", "last_outbound_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_id_activity")
