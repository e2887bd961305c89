"""Events visits publishes, and handlers for the contacts events it keeps projections of
and for addresses erased in contacts.

Handlers read only the fields they need (tolerant reader), never commit (``apply_event``
does), and go through ``upsert_projection`` so that an older event never overwrites a newer
state.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.erasure import ADDRESS_ERASED, erased_digest
from shared.events import Envelope, Handler, upsert_projection

from .models import Need, Organisation

NEWSLETTER_REQUESTED = "visits.registration.newsletter_requested"


def _text(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    return str(value)[:limit]


def apply_organisation(session: Session, envelope: Envelope) -> None:
    data = envelope["data"]
    archived = bool(data.get("archived")) or envelope["type"].endswith(".archived")
    upsert_projection(
        session,
        Organisation,
        {
            "id": uuid.UUID(str(data.get("id") or envelope["aggregate_id"])),
            "name": str(data.get("name") or "")[:300],
            "kind": _text(data, "kind", 40),
            "status": _text(data, "status", 40),
            "district": _text(data, "district", 120),
            "street": _text(data, "street", 200),
            "house_number": _text(data, "house_number", 20),
            "postcode": _text(data, "postcode", 10),
            "city": _text(data, "city", 120),
            "needs": [str(key) for key in data.get("needs") or []],
            "archived": archived,
            "version": int(envelope["version"]),
        },
    )


def apply_need(session: Session, envelope: Envelope) -> None:
    data = envelope["data"]
    key = str(data.get("key") or envelope["aggregate_id"])
    upsert_projection(
        session,
        Need,
        {
            "key": key[:80],
            "label": str(data.get("label") or key)[:200],
            "active": bool(data.get("active", True)),
            "version": int(envelope["version"]),
        },
        key="key",
    )


def apply_address_erased(session: Session, envelope: Envelope) -> None:
    """An address erased on request in contacts (Art. 17 GDPR): the sign-ups with it keep
    their counts and lose whom they name. Visits holds no people of contacts (visits name
    organisations and staff), so ``contacts.person.erased`` has nothing to find here."""
    from . import services

    services.erase_address(session, erased_digest(envelope))


HANDLERS: dict[str, Handler] = {
    "contacts.organisation.created": apply_organisation,
    "contacts.organisation.updated": apply_organisation,
    "contacts.organisation.archived": apply_organisation,
    "contacts.need.created": apply_need,
    "contacts.need.updated": apply_need,
    ADDRESS_ERASED: apply_address_erased,
}
