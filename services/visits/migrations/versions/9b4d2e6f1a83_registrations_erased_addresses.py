"""registrations: an address erased on request (Art. 17 GDPR) leaves the sign-up without one

Revision ID: 9b4d2e6f1a83
Revises: 7a3827ccd3e3
Create Date: 2026-12-01 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9b4d2e6f1a83"
down_revision: str | Sequence[str] | None = "7a3827ccd3e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.alter_column("registrations", "email", existing_type=sa.String(length=254), nullable=True)


def downgrade() -> None:
    """Downgrade schema: the erased sign-ups go (their counts with them), as a sign-up then
    needs an address."""
    op.execute(
        "DELETE FROM mails WHERE registration_id IN (SELECT id FROM registrations WHERE email IS NULL)"
    )
    op.execute("DELETE FROM registrations WHERE email IS NULL")
    op.alter_column("registrations", "email", existing_type=sa.String(length=254), nullable=False)
