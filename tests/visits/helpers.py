"""Helpers for the visits tests: contacts events as envelopes, applied through the real
consumer path (``shared.events.apply_event``)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask

from services.visits.events import HANDLERS
from services.visits.models import InboxEvent
from shared.db import get_database
from shared.events import Envelope, apply_event


def envelope(type_: str, aggregate_id: str, version: int, data: dict[str, Any]) -> Envelope:
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "source": "contacts",
        "aggregate_id": aggregate_id,
        "version": version,
        "occurred_at": "2026-11-29T10:00:00+00:00",
        "data": data,
    }


def organisation_data(org_id: uuid.UUID | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(org_id or uuid.uuid4()),
        "name": f"Bäckerei Schmidt {uuid.uuid4().hex[:8]}",
        "kind": "business",
        "status": "active",
        "district": "Groß Klein",
        "street": "Gerüstbauerring",
        "house_number": "12",
        "postcode": "18109",
        "city": "Rostock",
        "email": None,
        "phone": None,
        "needs": [],
        "tags": [],
        "archived": False,
    }
    data.update(overrides)
    return data


def apply(app: Flask, env: Envelope) -> bool:
    with get_database(app).session() as session:
        return apply_event(session, InboxEvent, HANDLERS, env)


def seed_organisation(app: Flask, version: int = 1, **overrides: Any) -> dict[str, Any]:
    data = organisation_data(**overrides)
    apply(app, envelope("contacts.organisation.created", data["id"], version, data))
    return data


def seed_need(app: Flask, key: str | None = None, label: str = "Digitalisierung") -> str:
    key = key or f"digitalisierung-{uuid.uuid4().hex[:6]}"
    apply(
        app,
        envelope("contacts.need.created", key, 1, {"key": key, "label": label, "active": True}),
    )
    return key


def training_body(**overrides: Any) -> dict[str, Any]:
    from datetime import datetime, timedelta

    from services.visits.services import BERLIN

    start = (datetime.now(BERLIN) + timedelta(days=10)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    body: dict[str, Any] = {
        "title": f"Digitalisierung im Handwerk {uuid.uuid4().hex[:6]}",
        "description": "Wie kleine Betriebe online sichtbar werden.",
        "topic": "digitalisierung",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "location_name": "Stadtteil- und Begegnungszentrum Groß Klein",
        "location_address": "Gerüstbauerring 28, 18109 Rostock",
        "trainer": "Handwerkskammer Ostmecklenburg-Vorpommern",
        "capacity": 2,
        "status": "published",
    }
    body.update(overrides)
    return body


def mail_text(mail: Any) -> str:
    part = mail.message().get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_path(mail: Any, action: str) -> str:
    """The path of the confirm or cancel link in a mail's text part."""
    import re

    found = re.search(rf"https?://[^/\s]+(/\S+/{action})\b", mail_text(mail))
    assert found, mail_text(mail)
    return found.group(1)


def close_app(app: Flask) -> None:
    """Close what an app made for one test opened: database pool, Redis, broker pool."""
    from shared.app import get_redis
    from shared.celery_app import get_celery

    get_database(app).dispose()
    get_redis(app).close()
    get_celery(app).close()
