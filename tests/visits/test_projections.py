"""Visits keeps projections of contacts' organisations and needs, fed by events."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from sqlalchemy import select

from services.contacts.models import OutboxEvent as ContactsOutbox
from services.visits.models import Need, Organisation
from shared.db import get_database
from shared.events import get_bus, record_event
from shared.testing import wait_until

from .helpers import apply, envelope, organisation_data, seed_need


def _organisation(app: Flask, org_id: str) -> Organisation | None:
    with get_database(app).session() as session:
        return session.get(Organisation, uuid.UUID(org_id))


def test_created_then_updated_organisation_is_projected(visits_app: Flask) -> None:
    data = organisation_data(needs=["digitalisierung"])
    assert apply(visits_app, envelope("contacts.organisation.created", data["id"], 1, data))
    changed = {**data, "name": "Bäckerei Schmidt & Söhne", "district": "Schmarl"}
    assert apply(visits_app, envelope("contacts.organisation.updated", data["id"], 2, changed))
    org = _organisation(visits_app, data["id"])
    assert org is not None
    assert (org.name, org.district, org.needs, org.version) == (
        "Bäckerei Schmidt & Söhne",
        "Schmarl",
        ["digitalisierung"],
        2,
    )


def test_an_older_event_arriving_late_changes_nothing(visits_app: Flask) -> None:
    data = organisation_data()
    apply(visits_app, envelope("contacts.organisation.updated", data["id"], 3, data))
    stale = {**data, "name": "Alter Name"}
    assert apply(visits_app, envelope("contacts.organisation.created", data["id"], 1, stale))
    org = _organisation(visits_app, data["id"])
    assert org is not None and org.name == data["name"] and org.version == 3


def test_the_same_event_delivered_twice_is_applied_once(visits_app: Flask) -> None:
    data = organisation_data()
    env = envelope("contacts.organisation.created", data["id"], 1, data)
    assert apply(visits_app, env) is True
    assert apply(visits_app, env) is False


def test_archived_organisation_is_marked_archived(visits_app: Flask) -> None:
    data = organisation_data()
    apply(visits_app, envelope("contacts.organisation.created", data["id"], 1, data))
    apply(visits_app, envelope("contacts.organisation.archived", data["id"], 2, data))
    org = _organisation(visits_app, data["id"])
    assert org is not None and org.archived is True


def test_unknown_fields_are_ignored_and_missing_optional_ones_tolerated(
    visits_app: Flask,
) -> None:
    org_id = str(uuid.uuid4())
    data: dict[str, Any] = {"id": org_id, "name": "Kiosk am Markt", "future_field": {"x": 1}}
    assert apply(visits_app, envelope("contacts.organisation.created", org_id, 1, data))
    org = _organisation(visits_app, org_id)
    assert org is not None and org.name == "Kiosk am Markt" and org.district is None


def test_needs_vocabulary_is_projected_and_updated(visits_app: Flask) -> None:
    key = seed_need(visits_app, label="Fachkräfte")
    apply(
        visits_app,
        envelope(
            "contacts.need.updated", key, 2, {"key": key, "label": "Fachkräfte", "active": False}
        ),
    )
    with get_database(visits_app).session() as session:
        need = session.get(Need, key)
        assert need is not None and need.active is False and need.version == 2


def test_event_from_the_contacts_outbox_reaches_the_projection_through_a_worker(
    contacts_app: Flask, visits_app: Flask, celery_worker_for: Any
) -> None:
    celery_worker_for("visits")
    data = organisation_data(name=f"Friseur Groß Klein {uuid.uuid4().hex[:6]}")
    with get_database(contacts_app).session() as session:
        record_event(
            session,
            ContactsOutbox,
            type="contacts.organisation.created",
            aggregate_id=data["id"],
            version=1,
            data=data,
        )
        session.commit()
    # No contacts worker here: relay as beat would.
    with get_database(contacts_app).session() as session:
        get_bus(contacts_app).relay(session)

    def projected() -> bool:
        with get_database(visits_app).session() as session:
            return (
                session.scalar(
                    select(Organisation.name).where(Organisation.id == uuid.UUID(data["id"]))
                )
                == data["name"]
            )

    wait_until(projected)
