"""An erasure in contacts (Art. 17 GDPR) reaches newsletter and visits through the outbox
and their real Celery workers: the subscriber goes, the sign-up loses whom it names, staff
cannot add the address again, and the person's own confirmed subscription can."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.newsletter.models import ErasedAddress, Subscriber, Subscription
from services.visits.models import Registration
from shared.db import get_database
from shared.erasure import email_sha256
from shared.events import get_bus
from shared.smtp_sink import SinkHandler
from shared.testing import auth, unique_email, wait_until
from tests.newsletter.conftest import link_in, path_of, staff_add, text_of
from tests.visits.helpers import training_body

PROBLEM = "application/problem+json"


def _subscriber(app: Flask, email: str) -> Subscriber | None:
    with get_database(app).session() as session:
        return session.scalar(select(Subscriber).where(Subscriber.email == email))


def test_erasure_in_contacts_reaches_newsletter_and_visits(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    visits_client: FlaskClient,
    visits_app: Flask,
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    smtp_sink: SinkHandler,
    staff_token: Callable[[str], str],
    worker_process: Callable[..., Any],
) -> None:
    for service in ("visits", "newsletter"):
        worker_process(service)
    coordinator = auth(staff_token("coordinator"))
    admin = auth(staff_token("admin"))
    address = unique_email("anna.erased")
    listed = newsletter_client.post(
        "/api/v1/lists", json={"name": f"Netzwerk {uuid.uuid4().hex[:8]}"}, headers=coordinator
    )
    list_id = listed.get_json()["id"]
    assert staff_add(newsletter_client, coordinator, address, list_id).status_code == 201
    training = visits_client.post("/api/v1/trainings", json=training_body(), headers=coordinator)
    training_id = training.get_json()["id"]
    signed_up = visits_client.post(
        f"/api/v1/public/trainings/{training_id}/registrations",
        json={"name": "Anna Schmidt", "email": address, "phone": "0381 123456"},
    )
    assert signed_up.status_code == 202, signed_up.get_json()

    # In capitals as someone typed it: the hash is of the folded address.
    erased = contacts_client.post(
        "/api/v1/privacy/erasures", json={"email": address.upper()}, headers=admin
    )
    assert erased.status_code == 200, erased.get_json()
    assert erased.get_json()["people"] == 0  # the register held no one: the event goes anyway
    with get_database(contacts_app).session() as session:
        get_bus(contacts_app).relay(session)  # no contacts worker here: as beat would

    wait_until(lambda: _subscriber(newsletter_app, address) is None, timeout=60, interval=0.5)

    def anonymised() -> Registration | None:
        with get_database(visits_app).session() as session:
            found = session.get(Registration, uuid.UUID(signed_up.get_json()["id"]))
            return found if found is not None and found.email is None else None

    registration = wait_until(anonymised, timeout=60, interval=0.5)
    assert (registration.name, registration.phone, registration.ip) == ("", None, None)
    assert registration.status == "cancelled"  # no mail reaches them: the seat is free

    # Staff cannot add the address again, one by one or in an import.
    refused = staff_add(newsletter_client, coordinator, address.upper(), list_id)
    assert refused.status_code == 409 and refused.content_type == PROBLEM
    assert refused.get_json()["code"] == "erased"
    assert _subscriber(newsletter_app, address) is None

    # The person's own subscription, confirmed, is a fresh consent: it lifts the suppression.
    requested = newsletter_client.post(
        "/api/v1/public/subscriptions",
        json={"email": address, "list_ids": [list_id], "consent_text_version": "v3"},
    )
    assert requested.status_code == 202
    mail = wait_until(
        lambda: [m for m in smtp_sink.to(address) if "Newsletter" in str(m.message()["Subject"])],
        timeout=60,
    )[0]
    confirm = path_of(link_in(text_of(mail.message()), "/confirm"))
    done = newsletter_client.post(confirm.split("?")[0], data={"token": confirm.split("token=")[1]})
    assert done.status_code == 200
    with get_database(newsletter_app).session() as session:
        status = session.scalar(
            select(Subscription.status)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == address)
        )
        lifted = session.get(ErasedAddress, email_sha256(address)) is None
    assert status == "confirmed" and lifted
