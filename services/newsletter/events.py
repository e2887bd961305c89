"""Events newsletter consumes: contacts' organisations (for segments and personalisation),
addresses erased in contacts, and newsletter requests from training sign-ups. Handlers do
not commit (apply_event does)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.erasure import ADDRESS_ERASED, erased_digest
from shared.events import Envelope, Handler, upsert_projection

from .models import ConsentRecord, MailingList, Organisation

log = logging.getLogger(__name__)


def on_organisation(session: Session, envelope: Envelope) -> None:
    data = envelope["data"]
    upsert_projection(
        session,
        Organisation,
        {
            "id": uuid.UUID(data["id"]),
            "name": data.get("name") or "",
            "kind": data.get("kind"),
            "district": data.get("district"),
            "needs": list(data.get("needs") or []),
            "archived": bool(data.get("archived")) or envelope["type"].endswith(".archived"),
            "version": int(envelope["version"]),
        },
    )


def on_newsletter_requested(session: Session, envelope: Envelope) -> None:
    """A training sign-up asked for the newsletter: an UNCONFIRMED subscription to the lists
    offered at sign-up, and our own double-opt-in mail. Never a consent by itself."""
    from . import services
    from .jobs import enqueue

    data = envelope["data"]
    list_ids = list(
        session.scalars(select(MailingList.id).where(MailingList.training_signup.is_(True)))
    )
    if not list_ids:
        log.warning("newsletter requested at a training sign-up, but no list is offered there")
        return
    try:
        email = services.normalise_email(data["email"])
        name = services._check_name(data.get("name") or "")
    except Exception:
        log.warning("newsletter request with an unusable address ignored")
        return
    requested_at = data.get("requested_at")
    services.take_turn_with_erasures(session)
    if services.erased_since(session, email, requested_at):
        # Made before the address was erased, applied after (events of two services come
        # in any order): no consent of the person's any more.
        log.info("newsletter request of an address erased since ignored")
        return
    subscriber = services._get_or_create_subscriber(session, email, name)
    pending = services._subscribe(session, subscriber, list_ids, "unconfirmed")
    if not pending:
        return
    consent = ConsentRecord(
        subscriber_id=subscriber.id,
        list_ids=pending,
        source="training_signup",
        consent_text_version=str(data.get("consent_text_version") or "unknown")[:100],
        note=f"Anmeldung zur Schulung „{data.get('training_title', '')}“"[:500],
        requested_at=datetime.fromisoformat(requested_at) if requested_at else None,
        request_ip=data.get("ip"),
        request_user_agent=(data.get("user_agent") or "")[:500] or None,
    )
    session.add(consent)
    session.flush()
    consent_id = consent.id

    from sqlalchemy import event

    def _after_commit(_session: Session) -> None:
        enqueue("send_confirmation", consent_id)

    event.listen(session, "after_commit", _after_commit, once=True)


def on_address_erased(session: Session, envelope: Envelope) -> None:
    """An address erased on request in contacts (Art. 17 GDPR): its subscribers go, and
    staff cannot add it again."""
    from . import services

    services.erase_address(session, erased_digest(envelope))


HANDLERS: dict[str, Handler] = {
    "contacts.organisation.created": on_organisation,
    "contacts.organisation.updated": on_organisation,
    "contacts.organisation.archived": on_organisation,
    "visits.registration.newsletter_requested": on_newsletter_requested,
    ADDRESS_ERASED: on_address_erased,
}
