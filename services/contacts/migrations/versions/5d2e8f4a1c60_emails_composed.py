"""people and organisations: emails composed (NFC), as the register now stores them

Revision ID: 5d2e8f4a1c60
Revises: e4a9c1f07b52
Create Date: 2026-11-30 03:20:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5d2e8f4a1c60"
down_revision: str | Sequence[str] | None = "e4a9c1f07b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = tuple(
    f"UPDATE {table} SET email = normalize(email, NFC)"  # noqa: S608 (two table names)
    " WHERE email IS NOT NULL AND email IS NOT NFC NORMALIZED"
    for table in ("people", "organisations")
)


def upgrade() -> None:
    """An address with an umlaut written decomposed (``u`` and a combining diaeresis, as
    macOS writes it) was stored as given; the register now composes addresses when it
    stores, compares, suppresses and erases them (normalise.fold_email), so the addresses
    stored before are composed too, or an erasure of the address as typed would miss them.
    The same address: no version, history entry or event."""
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    """Nothing to undo: the composed address is the one that was stored (its decomposed
    spelling is not kept)."""
