"""import rows: validated rows of a previewed import

Revision ID: 3b36abaa67b4
Revises: 307e9593c323
Create Date: 2026-11-29 17:24:34.057243

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "3b36abaa67b4"
down_revision: str | Sequence[str] | None = "307e9593c323"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "import_rows",
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("legal_form", sa.String(length=60), nullable=True),
        sa.Column("sector", sa.String(length=200), nullable=True),
        sa.Column("wz_code", sa.String(length=10), nullable=True),
        sa.Column("street", sa.String(length=200), nullable=True),
        sa.Column("house_number", sa.String(length=20), nullable=True),
        sa.Column("postcode", sa.String(length=5), nullable=True),
        sa.Column("city", sa.String(length=120), nullable=True),
        sa.Column("district", sa.String(length=120), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("website", sa.String(length=500), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=60), nullable=True),
        sa.Column("employees", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("needs", postgresql.ARRAY(sa.String(length=80)), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.String(length=80)), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("first_name", sa.String(length=120), nullable=True),
        sa.Column("last_name", sa.String(length=120), nullable=True),
        sa.Column("person_phone", sa.String(length=60), nullable=True),
        sa.Column("job_title", sa.String(length=200), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("search_vector", postgresql.TSVECTOR(), nullable=False),
        sa.Column("name_vector", postgresql.TSVECTOR(), nullable=False),
        sa.Column("match_name", sa.String(length=300), nullable=False),
        sa.Column("match_address", sa.String(length=300), nullable=False),
        sa.Column("match_phone", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["imports.id"],
            name=op.f("fk_import_rows_import_id_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "line", name=op.f("pk_import_rows")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("import_rows")
