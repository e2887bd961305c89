"""suppressions: addresses erased on request (Art. 17 GDPR), as their SHA-256

Revision ID: e3a9c41f7b20
Revises: 2bcb2e18e2e5
Create Date: 2026-11-30 10:15:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e3a9c41f7b20"
down_revision: str | Sequence[str] | None = "2bcb2e18e2e5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "suppressions",
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.CheckConstraint(
            "email_sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_suppressions_email_sha256_hex")
        ),
        sa.PrimaryKeyConstraint("email_sha256", name=op.f("pk_suppressions")),
    )


def downgrade() -> None:
    """Downgrade schema: the suppressions are lost, so erased addresses may be imported
    again."""
    op.drop_table("suppressions")
