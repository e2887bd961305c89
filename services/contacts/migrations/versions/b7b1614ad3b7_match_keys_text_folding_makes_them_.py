"""match keys: text (folding makes them longer than the fields they are made of)

Revision ID: b7b1614ad3b7
Revises: 5c0d7e21a9f4
Create Date: 2026-11-29 23:12:56.834970

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b7b1614ad3b7"
down_revision: str | Sequence[str] | None = "5c0d7e21a9f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("organisations", "import_rows")
LENGTHS = {"match_name": 300, "match_address": 300, "match_phone": 40}


def upgrade() -> None:
    """Upgrade schema: varchar to text is binary-compatible in PostgreSQL, so neither the
    tables nor their indexes are rewritten."""
    for table in TABLES:
        for column, length in LENGTHS.items():
            op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length=length))


def downgrade() -> None:
    """Downgrade schema: longer keys are cut to the old lengths."""
    for table in TABLES:
        for column, length in LENGTHS.items():
            op.alter_column(
                table,
                column,
                type_=sa.String(length=length),
                existing_type=sa.Text(),
                postgresql_using=f"left({column}, {length})",
            )
