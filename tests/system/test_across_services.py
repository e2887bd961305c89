"""The services together, as the coordinator and a business owner use them: events travel
through real Celery worker processes from contacts to visits and newsletter, and from
visits to newsletter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.newsletter.models import Organisation as NewsletterOrganisation
from services.newsletter.models import Subscriber, Subscription
from shared.db import get_database
from shared.smtp_sink import SinkHandler
from shared.testing import auth, unique_email, wait_until
from tests.visits.helpers import link_path, training_body


def test_organisation_created_in_contacts_is_visited_and_segmented(
    contacts_client: FlaskClient,
    visits_client: FlaskClient,
    newsletter_app: Flask,
    staff_token: Callable[[str], str],
    worker_process: Callable[..., Any],
) -> None:
    for service in ("contacts", "visits", "newsletter"):
        worker_process(service)
    coordinator = auth(staff_token("coordinator"))
    name = f"Bäckerei Müller {uuid.uuid4().hex[:6]}"
    created = contacts_client.post(
        "/api/v1/organisations",
        json={
            "kind": "business",
            "name": name,
            "street": "Gerüstbauerring",
            "house_number": "7",
            "postcode": "18109",
            "city": "Rostock",
            "district": "Groß Klein",
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.get_json()
    organisation_id = created.get_json()["id"]

    # Visits knows the organisation once the event has arrived: the quick-log then works.
    def quick_log() -> Any:
        response = visits_client.post(
            "/api/v1/visits/quick",
            json={
                "organisation_id": organisation_id,
                "channel": "on_site",
                "note": "Inhaberin sucht Azubis",
            },
            headers=coordinator,
        )
        return response if response.status_code == 201 else None

    wait_until(quick_log, timeout=60, interval=0.5)
    timeline = visits_client.get(
        f"/api/v1/organisations/{organisation_id}/visits", headers=coordinator
    )
    assert [visit["summary"] for visit in timeline.get_json()["items"]] == [
        "Inhaberin sucht Azubis"
    ]

    def in_newsletter_projection() -> NewsletterOrganisation | None:
        with get_database(newsletter_app).session() as session:
            return session.get(NewsletterOrganisation, uuid.UUID(organisation_id))

    projected = wait_until(in_newsletter_projection, timeout=60, interval=0.5)
    assert projected.district == "Groß Klein"
    assert projected.name == name

    # A rename travels too, and no older event can undo it.
    renamed = contacts_client.patch(
        f"/api/v1/organisations/{organisation_id}",
        json={"name": name + " & Söhne", "version": created.get_json()["version"]},
        headers=coordinator,
    )
    assert renamed.status_code == 200, renamed.get_json()
    wait_until(
        lambda: (org := in_newsletter_projection()) is not None and org.name.endswith("& Söhne"),
        timeout=60,
        interval=0.5,
    )


def test_newsletter_tick_at_a_training_sign_up_becomes_a_pending_subscription(
    visits_client: FlaskClient,
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    smtp_sink: SinkHandler,
    staff_token: Callable[[str], str],
    worker_process: Callable[..., Any],
) -> None:
    for service in ("visits", "newsletter"):
        worker_process(service)
    coordinator = auth(staff_token("coordinator"))
    signup_list = newsletter_client.post(
        "/api/v1/lists",
        json={"name": f"Netzwerk Groß Klein {uuid.uuid4().hex[:6]}", "training_signup": True},
        headers=coordinator,
    )
    assert signup_list.status_code == 201, signup_list.get_json()
    training = visits_client.post("/api/v1/trainings", json=training_body(), headers=coordinator)
    assert training.status_code == 201, training.get_json()

    owner = unique_email("inhaberin")
    signed_up = visits_client.post(
        f"/api/v1/public/trainings/{training.get_json()['id']}/registrations",
        json={
            "name": "Ayşe Öztürk",
            "email": owner,
            "organisation_name": "Änderungsschneiderei",
            "newsletter": True,
        },
    )
    assert signed_up.status_code == 202, signed_up.get_json()
    request_mail = wait_until(lambda: smtp_sink.to(owner), timeout=60)[0]
    assert visits_client.post(link_path(request_mail, "confirm")).status_code == 200

    def subscription_status() -> str | None:
        with get_database(newsletter_app).session() as session:
            return session.scalar(
                select(Subscription.status)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscriber.email == owner)
            )

    # Never a consent by itself: the subscription waits for the newsletter's own opt-in.
    assert wait_until(subscription_status, timeout=60, interval=0.5) == "unconfirmed"
    newsletter_mail = wait_until(
        lambda: [m for m in smtp_sink.to(owner) if "Newsletter" in str(m.message()["Subject"])],
        timeout=60,
    )
    assert "bestätigen" in str(newsletter_mail[0].message()["Subject"])
