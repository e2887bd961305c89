"""import_rows: kind is NULL when the row has none (a matched organisation keeps its own)

Revision ID: 8d41c2b7e5a3
Revises: b7b1614ad3b7
Create Date: 2026-11-29 23:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8d41c2b7e5a3"
down_revision: str | Sequence[str] | None = "b7b1614ad3b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.alter_column("import_rows", "kind", existing_type=sa.String(20), nullable=True)


def downgrade() -> None:
    """Downgrade schema: rows staged without a kind become the default kind's."""
    op.execute("UPDATE import_rows SET kind = 'business' WHERE kind IS NULL")
    op.alter_column("import_rows", "kind", existing_type=sa.String(20), nullable=False)
