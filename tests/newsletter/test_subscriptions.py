"""Double opt-in, consent proof, preferences, unsubscribe, import and the staff API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.newsletter.models import ConsentRecord, Subscriber, Subscription
from shared.db import get_database
from shared.smtp_sink import SinkHandler
from shared.testing import unique_email

from .conftest import link_in, one_mail, path_of, text_of

UA = "Mozilla/5.0 (Testbrowser)"


def _subscribe(client: FlaskClient, email: str, list_ids: list[str], name: str = "Erika") -> Any:
    return client.post(
        "/api/v1/public/subscriptions",
        json={"email": email, "name": name, "list_ids": list_ids, "consent_text_version": "v3"},
        headers={"User-Agent": UA},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )


def _statuses(app: Flask, email: str) -> dict[str, str]:
    with get_database(app).session() as session:
        rows = session.execute(
            select(Subscription.list_id, Subscription.status)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == email)
        ).all()
    return {str(list_id): status for list_id, status in rows}


def test_double_opt_in_confirms_with_a_button_and_keeps_the_proof(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    newsletter_worker: Any,
    smtp_sink: SinkHandler,
    make_list: Callable[..., str],
) -> None:
    first, second = make_list(), make_list()
    address = unique_email("Erika.Mustermann")
    response = _subscribe(newsletter_client, address.upper(), [first, second])
    assert response.status_code == 202
    assert _statuses(newsletter_app, address.lower()) == {
        first: "unconfirmed",
        second: "unconfirmed",
    }

    mail = one_mail(smtp_sink, address.lower())
    assert "bestätigen" in mail["Subject"]
    body = text_of(mail)
    assert "ignorieren Sie diese Nachricht" in body
    assert "List-Unsubscribe" not in mail  # not a campaign
    confirm = path_of(link_in(body, "/confirm"))

    # Opening the link (a mail scanner does that) confirms nothing.
    page = newsletter_client.get(confirm)
    assert page.status_code == 200 and "<form" in page.get_data(as_text=True)
    assert set(_statuses(newsletter_app, address.lower()).values()) == {"unconfirmed"}

    token = confirm.split("token=")[1]
    done = newsletter_client.post(
        confirm.split("?")[0],
        data={"token": token},
        headers={"User-Agent": "Mailprogramm/2"},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )
    assert done.status_code == 200
    assert "bestätigt" in done.get_data(as_text=True)
    assert set(_statuses(newsletter_app, address.lower()).values()) == {"confirmed"}

    with get_database(newsletter_app).session() as session:
        consent = session.scalars(
            select(ConsentRecord)
            .join(Subscriber, Subscriber.id == ConsentRecord.subscriber_id)
            .where(Subscriber.email == address.lower())
        ).one()
        assert consent.source == "form"
        assert consent.consent_text_version == "v3"
        assert consent.request_ip == "203.0.113.7" and consent.request_user_agent == UA
        assert consent.confirm_ip == "198.51.100.9"
        assert consent.confirm_user_agent == "Mailprogramm/2"
        assert consent.confirmed_at is not None and consent.confirmed_at >= consent.requested_at

    # Confirming twice is harmless; subscribing again creates nothing new.
    again = newsletter_client.post(confirm.split("?")[0], data={"token": token})
    assert again.status_code == 200
    assert _subscribe(newsletter_client, address, [first, second]).status_code == 202
    with get_database(newsletter_app).session() as session:
        subscribers = session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.email == address.lower())
        )
        consents = session.scalar(
            select(func.count())
            .select_from(ConsentRecord)
            .join(Subscriber, Subscriber.id == ConsentRecord.subscriber_id)
            .where(Subscriber.email == address.lower())
        )
    assert subscribers == 1 and consents == 1
    assert len(_statuses(newsletter_app, address.lower())) == 2


def test_bad_links_and_bad_input(
    newsletter_client: FlaskClient, make_list: Callable[..., str]
) -> None:
    bad = newsletter_client.post("/api/v1/public/subscriptions/confirm", data={"token": "x.y.z"})
    assert bad.status_code == 404 and "ungültig" in bad.get_data(as_text=True)
    list_id = make_list()
    for payload, field in [
        ({"email": "kein-mail", "list_ids": [list_id]}, "email"),
        (
            {"email": unique_email(), "name": "A\r\nBcc: x@example.org", "list_ids": [list_id]},
            "name",
        ),
        ({"email": unique_email(), "list_ids": []}, "list_ids"),
        ({"email": unique_email(), "list_ids": [str(uuid.uuid4())]}, "list_ids"),
    ]:
        response = newsletter_client.post("/api/v1/public/subscriptions", json=payload)
        assert response.status_code == 422, payload
        assert field in response.get_json()["errors"]


def test_private_list_cannot_be_subscribed_publicly(
    newsletter_client: FlaskClient, make_list: Callable[..., str]
) -> None:
    hidden = make_list(public=False)
    response = _subscribe(newsletter_client, unique_email(), [hidden])
    assert response.status_code == 422


def test_preferences_unsubscribe_one_list_keeps_the_others_and_all_blocks_all(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
    secret_key: str,
) -> None:
    from services.newsletter.campaigns import PREFERENCES_PURPOSE
    from shared.auth import sign_link

    a, b, c = make_list("Netzwerk Schmarl " + uuid.uuid4().hex[:6]), make_list(), make_list()
    (address,) = add_subscribers([a, b, c])
    with get_database(newsletter_app).session() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
    token = sign_link(secret_key, PREFERENCES_PURPOSE, str(subscriber_id))

    page = newsletter_client.get(f"/api/v1/public/preferences?token={token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="lists"' in html and "Netzwerk Schmarl" in html

    garbled = newsletter_client.post(
        "/api/v1/public/preferences", data={"token": token, "name": "Erika\x00", "lists": [a]}
    )
    assert garbled.status_code == 422  # and nothing changed:
    assert set(_statuses(newsletter_app, address).values()) == {"confirmed"}
    saved = newsletter_client.post(
        "/api/v1/public/preferences", data={"token": token, "name": "Erika M.", "lists": [a, c]}
    )
    assert saved.status_code == 200
    assert _statuses(newsletter_app, address) == {
        a: "confirmed",
        b: "unsubscribed",
        c: "confirmed",
    }
    every = newsletter_client.post(
        "/api/v1/public/preferences", data={"token": token, "unsubscribe_all": "1"}
    )
    assert every.status_code == 200
    assert set(_statuses(newsletter_app, address).values()) == {"unsubscribed"}
    with get_database(newsletter_app).session() as session:
        state = session.scalar(select(Subscriber.state).where(Subscriber.email == address))
    assert state == "blocklisted"
    assert newsletter_client.get("/api/v1/public/preferences?token=forged").status_code == 404


def test_import_needs_a_stated_consent_source(
    newsletter_client: FlaskClient, writer: dict[str, str], make_list: Callable[..., str]
) -> None:
    list_id = make_list()
    base = {
        "list_ids": [list_id],
        "source": "import",
        "consent_text_version": "2026-01",
        "consented_at": datetime.now(UTC).isoformat(),
    }
    rows = [{"email": unique_email(), "name": "Anna"}]
    missing = newsletter_client.post(
        "/api/v1/subscribers/import", json={**base, "subscribers": rows}, headers=writer
    )
    assert missing.status_code == 422 and "note" in missing.get_json()["errors"]
    wrong = newsletter_client.post(
        "/api/v1/subscribers/import",
        json={**base, "source": "bought", "note": "x", "subscribers": rows},
        headers=writer,
    )
    assert wrong.status_code == 422
    csv_text = f"email,name\n{unique_email()},Jürgen Müller\n{unique_email()},Anna\n"
    ok = newsletter_client.post(
        "/api/v1/subscribers/import",
        json={**base, "note": "Liste vom Netzwerktreffen", "csv": csv_text},
        headers=writer,
    )
    assert ok.status_code == 200 and ok.get_json()["created"] == 2
    listed = newsletter_client.get(
        f"/api/v1/subscribers?list_id={list_id}&status=confirmed", headers=writer
    ).get_json()
    assert listed["total"] == 2
    detail = newsletter_client.get(
        f"/api/v1/subscribers/{listed['items'][0]['id']}", headers=writer
    ).get_json()
    assert detail["consents"][0]["note"] == "Liste vom Netzwerktreffen"
    assert detail["subscriptions"][0]["status"] == "confirmed"


def test_list_crud_and_roles(
    newsletter_client: FlaskClient, writer: dict[str, str], staff_token: Callable[[str], str]
) -> None:
    from shared.testing import auth

    name = f"Vermieter und Wohnungswirtschaft {uuid.uuid4().hex[:6]}"
    created = newsletter_client.post("/api/v1/lists", json={"name": name}, headers=writer)
    assert created.status_code == 201
    list_id = created.get_json()["id"]
    assert (
        newsletter_client.post("/api/v1/lists", json={"name": name}, headers=writer).status_code
        == 409
    )
    for broken in (f"{name}\n", f"{name}\r\nBcc: x", f"{name}\u2028"):  # a name is one line
        refused = newsletter_client.post("/api/v1/lists", json={"name": broken}, headers=writer)
        assert refused.status_code == 422
        assert refused.get_json()["errors"]["name"] == ["Line breaks are not allowed."]
    viewer = auth(staff_token("viewer"))
    assert (
        newsletter_client.post("/api/v1/lists", json={"name": "x"}, headers=viewer).status_code
        == 403
    )
    assert newsletter_client.get("/api/v1/lists").status_code == 401
    patched = newsletter_client.patch(
        f"/api/v1/lists/{list_id}", json={"description": "Für Vermieter"}, headers=writer
    )
    assert patched.get_json()["description"] == "Für Vermieter"
    assert newsletter_client.delete(f"/api/v1/lists/{list_id}", headers=writer).status_code == 204
    assert newsletter_client.get(f"/api/v1/lists/{list_id}", headers=viewer).status_code == 404


def test_training_signup_event_makes_an_unconfirmed_subscription_and_a_doi_mail(
    newsletter_app: Flask,
    newsletter_worker: Any,
    smtp_sink: SinkHandler,
    make_list: Callable[..., str],
) -> None:
    from services.newsletter.events import HANDLERS
    from services.newsletter.models import InboxEvent
    from shared.events import apply_event

    signup_list = make_list(training_signup=True)
    address = unique_email("teilnehmer")
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "visits.registration.newsletter_requested",
        "source": "visits",
        "aggregate_id": str(uuid.uuid4()),
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {
            "email": address,
            "name": "Jürgen Müller",
            "organisation_name": "Bäckerei Müller",
            "training_id": str(uuid.uuid4()),
            "training_title": "Social Media für Händler",
            "requested_at": datetime.now(UTC).isoformat(),
            "ip": "192.0.2.1",
            "user_agent": "Browser",
            "consent_text_version": "anmeldung-v2",
        },
    }
    with newsletter_app.app_context():
        with get_database(newsletter_app).session() as session:
            assert apply_event(session, InboxEvent, HANDLERS, envelope)
        with get_database(newsletter_app).session() as session:
            assert not apply_event(session, InboxEvent, HANDLERS, envelope)  # once
    statuses = _statuses(newsletter_app, address)
    assert statuses[signup_list] == "unconfirmed"
    mail = one_mail(smtp_sink, address)
    assert "bestätigen" in mail["Subject"]
    with get_database(newsletter_app).session() as session:
        consent = session.scalars(
            select(ConsentRecord)
            .join(Subscriber, Subscriber.id == ConsentRecord.subscriber_id)
            .where(Subscriber.email == address)
        ).one()
    assert consent.source == "training_signup"
    assert consent.consent_text_version == "anmeldung-v2"
    assert consent.request_ip == "192.0.2.1" and consent.confirmed_at is None


def test_organisation_events_feed_the_projection(newsletter_app: Flask) -> None:
    from services.newsletter.events import HANDLERS
    from services.newsletter.models import InboxEvent, Organisation
    from shared.events import apply_event

    org_id = str(uuid.uuid4())

    def event(version: int, district: str, kind: str = "business") -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "type": f"contacts.organisation.{'updated' if version > 1 else 'created'}",
            "source": "contacts",
            "aggregate_id": org_id,
            "version": version,
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"id": org_id, "name": "Café Eck", "kind": kind, "status": "active",
                     "district": district, "needs": ["digitalisierung"], "tags": [],
                     "archived": False},
        }  # fmt: skip

    with get_database(newsletter_app).session() as session:
        apply_event(session, InboxEvent, HANDLERS, event(1, "Schmarl"))
        apply_event(session, InboxEvent, HANDLERS, event(3, "Groß Klein", "landlord"))
        apply_event(session, InboxEvent, HANDLERS, event(2, "Lütten Klein"))  # older: ignored
        organisation = session.get(Organisation, uuid.UUID(org_id))
        assert organisation is not None
        assert organisation.district == "Groß Klein" and organisation.kind == "landlord"
        assert organisation.needs == ["digitalisierung"] and organisation.version == 3


def test_staff_add_block_and_erase_a_subscriber(
    newsletter_client: FlaskClient, writer: dict[str, str], make_list: Callable[..., str]
) -> None:
    list_id = make_list()
    address = unique_email("Staff.Added")
    consent = {
        "source": "form",
        "consent_text_version": "papier-2026",
        "note": "Anmeldekarte vom Stadtteilfest",
        "consented_at": datetime.now(UTC).isoformat(),
    }
    without = newsletter_client.post(
        "/api/v1/subscribers", json={"email": address, "list_ids": [list_id]}, headers=writer
    )
    assert without.status_code == 422 and "consent" in without.get_json()["errors"]
    created = newsletter_client.post(
        "/api/v1/subscribers",
        json={"email": address, "name": "Ute", "list_ids": [list_id], "consent": consent},
        headers=writer,
    )
    assert created.status_code == 201
    subscriber = created.get_json()
    assert subscriber["email"] == address.lower() and subscriber["state"] == "active"
    path = f"/api/v1/subscribers/{subscriber['id']}"
    blocked = newsletter_client.patch(path, json={"state": "blocklisted"}, headers=writer)
    assert blocked.get_json()["state"] == "blocklisted"
    detail = newsletter_client.get(path, headers=writer).get_json()
    assert {s["status"] for s in detail["subscriptions"]} == {"unsubscribed"}
    assert newsletter_client.delete(path, headers=writer).status_code == 204
    assert newsletter_client.get(path, headers=writer).status_code == 404
    suppressed = newsletter_client.get("/api/v1/suppressions", headers=writer).get_json()
    assert {"email": address.lower(), "reason": "erasure"} in [
        {"email": s["email"], "reason": s["reason"]} for s in suppressed
    ]
    again = newsletter_client.post(
        "/api/v1/subscribers",
        json={"email": address, "list_ids": [list_id], "consent": consent},
        headers=writer,
    )
    assert again.status_code == 409  # an import cannot bring an erased address back
