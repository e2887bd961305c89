"""premises history: floor areas and rents as JSON numbers, as the API gives them

Revision ID: 04dde509eba7
Revises: 8d41c2b7e5a3
Create Date: 2026-11-30 01:44:00.000000

"""

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

# revision identifiers, used by Alembic.
revision: str = "04dde509eba7"
down_revision: str | Sequence[str] | None = "8d41c2b7e5a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The premises' amounts in their history entries. An entry's before and after are each
# null (before of "created"), the whole record ("created") or the changed fields only
# ("updated", "archived"); a rent may be null. Premises have no events, so no outbox
# payload holds them. Written here rather than imported, so that this step stays as it
# is whatever the application's code becomes.
AMOUNTS = ("floor_area", "rent_per_m2")
BATCH = 1000

_ENTRIES = sa.text("""
SELECT id, before, after FROM changes
WHERE entity_type = 'premises' AND id > :last AND :kind IN (
    jsonb_typeof(before -> 'floor_area'), jsonb_typeof(before -> 'rent_per_m2'),
    jsonb_typeof(after -> 'floor_area'), jsonb_typeof(after -> 'rent_per_m2')
)
ORDER BY id LIMIT :batch
""")
_UPDATE = sa.text("UPDATE changes SET before = :before, after = :after WHERE id = :id").bindparams(
    sa.bindparam("before", type_=JSONB), sa.bindparam("after", type_=JSONB)
)


def upgrade() -> None:
    """Upgrade data: "85.50" becomes 85.5, as the application now records it (a float)."""
    _convert("string", _number)


def downgrade() -> None:
    """Downgrade data: 85.5 becomes "85.50" again, the text of the column's Decimal."""
    _convert("number", _text)


def _number(value: Any) -> Any:
    return float(Decimal(value)) if isinstance(value, str) else value


def _text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return str(Decimal(repr(value)).quantize(Decimal("0.01")))


def _convert(kind: str, convert: Callable[[Any], Any]) -> None:
    """Every premises entry with an amount of JSON type ``kind``, in batches by id."""
    connection = op.get_bind()
    last = 0
    while rows := connection.execute(_ENTRIES, {"last": last, "kind": kind, "batch": BATCH}).all():
        connection.execute(
            _UPDATE,
            [
                {
                    "id": row.id,
                    "before": _amounts(row.before, convert),
                    "after": _amounts(row.after, convert),
                }
                for row in rows
            ],
        )
        last = rows[-1].id


def _amounts(entry: dict[str, Any] | None, convert: Callable[[Any], Any]) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {key: convert(value) if key in AMOUNTS else value for key, value in entry.items()}
