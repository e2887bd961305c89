"""imports: how many people an import creates, and how many it gives a role elsewhere

Revision ID: e4a9c1f07b52
Revises: e3a9c41f7b20
Create Date: 2026-11-30 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e4a9c1f07b52"
down_revision: str | Sequence[str] | None = "e3a9c41f7b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("people_created_count", "people_linked_count")


def upgrade() -> None:
    """Upgrade schema: imports made before count 0 people (they were not counted)."""
    for name in COLUMNS:
        op.add_column("imports", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        op.alter_column("imports", name, server_default=None)


def downgrade() -> None:
    """Downgrade schema."""
    for name in COLUMNS:
        op.drop_column("imports", name)
