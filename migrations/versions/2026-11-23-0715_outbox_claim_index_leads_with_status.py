"""outbox_jobs: the claim index leads with status

SQLite never chose ``(priority, due_at) WHERE status = 'pending'`` for the claim: with an equality on
``status`` it preferred ``ix_outbox_jobs_status_account`` and sorted every pending row for each batch
(12 ms per claim with 10,000 waiting). Leading with ``status`` gives the planner the equality and the
order in one index (0.1 ms).

Revision ID: 3f6b2d8e9a41
Revises: 8e2f4b6c1a90
Create Date: 2026-11-23 07:15:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f6b2d8e9a41"
down_revision: str | None = "8e2f4b6c1a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("outbox_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_jobs_claim", sqlite_where=_PENDING, postgresql_where=_PENDING)
        batch_op.create_index(
            "ix_outbox_jobs_claim",
            ["status", "priority", "due_at"],
            unique=False,
            sqlite_where=_PENDING,
            postgresql_where=_PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_jobs_claim", sqlite_where=_PENDING, postgresql_where=_PENDING)
        batch_op.create_index(
            "ix_outbox_jobs_claim",
            ["priority", "due_at"],
            unique=False,
            sqlite_where=_PENDING,
            postgresql_where=_PENDING,
        )
