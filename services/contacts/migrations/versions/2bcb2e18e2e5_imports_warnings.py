"""imports: warnings about the file as a whole (lines read as Windows-1252 in a UTF-8 file)

Revision ID: 2bcb2e18e2e5
Revises: 04dde509eba7
Create Date: 2026-11-30 01:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "2bcb2e18e2e5"
down_revision: str | Sequence[str] | None = "04dde509eba7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema: imports uploaded before have no warnings."""
    op.add_column(
        "imports",
        sa.Column(
            "warnings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    """Downgrade schema: the warnings are dropped (the encoding still says utf-8+cp1252)."""
    op.drop_column("imports", "warnings")
