"""erased addresses (Art. 17 GDPR) as their SHA-256; deliveries outlive an erased subscriber

Revision ID: 5e1f0b7c9a42
Revises: d09f6834466d
Create Date: 2026-12-01 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5e1f0b7c9a42"
down_revision: str | Sequence[str] | None = "d09f6834466d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "erased_addresses",
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "email_sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_erased_addresses_email_sha256_hex")
        ),
        sa.PrimaryKeyConstraint("email_sha256", name=op.f("pk_erased_addresses")),
    )
    op.alter_column("deliveries", "subscriber_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    """Downgrade schema: the erased addresses are lost, so staff may add them again, and
    the anonymised deliveries of erased subscribers go (their counts with them)."""
    op.execute("DELETE FROM deliveries WHERE subscriber_id IS NULL")
    op.alter_column("deliveries", "subscriber_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_table("erased_addresses")
