"""Sign-up with double opt-in, waitlist, cancel by link, mails through a real worker and a
real SMTP sink, the German pages behind the links, and bad input."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from services.visits import services
from services.visits.models import OutboxEvent, Registration
from shared.db import get_database, utcnow
from shared.smtp_sink import SinkHandler, StoredMail
from shared.testing import auth, unique_email, wait_until

from .helpers import close_app, link_path, mail_text, seed_organisation, training_body

PROBLEM = "application/problem+json"
JSON = {"Accept": "application/json"}


def _training(client: FlaskClient, token: str, **overrides: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/trainings", json=training_body(**overrides), headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _sign_up(client: FlaskClient, training_id: str, email: str, **extra: Any) -> Any:
    body = {"name": "Jürgen Müller", "email": email, **extra}
    return client.post(f"/api/v1/public/trainings/{training_id}/registrations", json=body)


def _mails(sink: SinkHandler, email: str, count: int = 1) -> list[StoredMail]:
    return wait_until(lambda: (m := sink.to(email)) and len(m) >= count and m)  # type: ignore[no-any-return]


def _subjects(sink: SinkHandler, email: str) -> list[str]:
    return [str(m.message()["Subject"]) for m in sink.to(email)]


@pytest.fixture
def coordinator(staff_token: Callable[[str], str]) -> str:
    return staff_token("coordinator")


def test_two_seats_three_people_cancel_promotes_the_waitlisted_one(
    visits_client: FlaskClient,
    smtp_sink: SinkHandler,
    celery_worker_for: Any,
    coordinator: str,
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator, capacity=2)
    people = [unique_email("teilnehmer") for _ in range(3)]
    for email in people:
        response = _sign_up(visits_client, training["id"], email)
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["status"] == "pending"

    statuses = []
    for email in people:
        (request_mail,) = _mails(smtp_sink, email)
        assert "Bitte bestätigen" in str(request_mail.message()["Subject"])
        confirm = link_path(request_mail, "confirm")
        page = visits_client.get(confirm)
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert 'lang="de"' in html and "Anmeldung jetzt bestätigen" in html
        assert '<form method="post"' in html
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        done = visits_client.post(confirm)
        assert done.status_code == 200
        statuses.append(done.get_data(as_text=True))
    assert "Ihre Anmeldung ist bestätigt" in statuses[0]
    assert "Ihre Anmeldung ist bestätigt" in statuses[1]
    assert "Platz 1 der Warteliste" in statuses[2]

    # The mails that follow the click: confirmation with calendar, waitlist with position.
    confirmed_mail = _mails(smtp_sink, people[0], 2)[1]
    message = confirmed_mail.message()
    assert str(message["Subject"]).startswith("Anmeldung bestätigt")
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == "schulung.ics"
    assert "BEGIN:VEVENT" in attachment.get_content()
    waitlisted_mail = _mails(smtp_sink, people[2], 2)[1]
    assert "Platz 1 der Warteliste" in mail_text(waitlisted_mail)

    staff = visits_client.get(
        f"/api/v1/trainings/{training['id']}/registrations", headers=auth(coordinator)
    ).get_json()
    assert sorted(r["status"] for r in staff) == ["confirmed", "confirmed", "waitlisted"]
    assert next(r for r in staff if r["status"] == "waitlisted")["waitlist_position"] == 1

    # The first cancels by the link in their confirmation: a page first, the button POSTs.
    cancel = link_path(confirmed_mail, "cancel")
    page = visits_client.get(cancel)
    assert page.status_code == 200 and "Ja, abmelden" in page.get_data(as_text=True)
    assert visits_client.post(cancel).status_code == 200
    promoted = _mails(smtp_sink, people[2], 3)[2]
    assert "Ein Platz ist frei" in str(promoted.message()["Subject"])
    assert next(promoted.message().iter_attachments()).get_filename() == "schulung.ics"
    assert "Abmeldung" in _subjects(smtp_sink, people[0])[-1] or wait_until(
        lambda: "Abmeldung erhalten" in _subjects(smtp_sink, people[0])[-1]
    )
    seats = visits_client.get(f"/api/v1/trainings/{training['id']}", headers=auth(coordinator))
    assert (seats.get_json()["confirmed"], seats.get_json()["waitlisted"]) == (2, 0)

    # The same links again: clear German pages with the right status.
    reused = visits_client.post(cancel)
    assert reused.status_code == 409 and "bereits storniert" in reused.get_data(as_text=True)
    reused_json = visits_client.post(cancel, headers=JSON)
    assert reused_json.status_code == 409 and reused_json.mimetype == PROBLEM
    confirm_again = visits_client.get(link_path(_mails(smtp_sink, people[1])[0], "confirm"))
    assert confirm_again.status_code == 409
    assert "bereits bestätigt" in confirm_again.get_data(as_text=True)


def test_mail_is_german_multipart_escaped_and_carries_no_advertising(
    visits_client: FlaskClient, smtp_sink: SinkHandler, celery_worker_for: Any, coordinator: str
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator)
    email = unique_email()
    _sign_up(visits_client, training["id"], email, name="<script>alert(1)</script> Groß")
    (mail,) = _mails(smtp_sink, email)
    message = mail.message()
    alternative = next(p for p in message.walk() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Guten Tag" in mail_text(mail) and "innerhalb von 48 Stunden" in mail_text(mail)
    assert "Newsletter" not in html and "Angebot" not in html
    assert message["Auto-Submitted"] == "auto-generated"


def test_same_address_again_takes_no_second_seat_and_gets_the_link_again(
    visits_app: Flask,
    visits_client: FlaskClient,
    smtp_sink: SinkHandler,
    celery_worker_for: Any,
    coordinator: str,
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator, capacity=1)
    email = unique_email()
    first = _sign_up(visits_client, training["id"], email)
    second = _sign_up(visits_client, training["id"], email.upper())
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]
    mails = _mails(smtp_sink, email, 2)
    assert all("Bitte bestätigen" in str(m.message()["Subject"]) for m in mails)
    assert visits_client.post(link_path(mails[1], "confirm"), headers=JSON).status_code == 200
    # Signed up again after confirming: no new seat, the confirmation comes again.
    third = _sign_up(visits_client, training["id"], email)
    assert third.status_code == 202 and third.get_json()["id"] == first.get_json()["id"]
    wait_until(
        lambda: _subjects(smtp_sink, email).count(f"Anmeldung bestätigt: {training['title']}") == 2
    )
    with get_database(visits_app).session() as session:
        rows = session.scalars(
            select(Registration).where(Registration.training_id == uuid.UUID(training["id"]))
        ).all()
    assert [r.status for r in rows] == ["confirmed"]


def test_bad_sign_ups_get_clear_problems(visits_client: FlaskClient, coordinator: str) -> None:
    training = _training(visits_client, coordinator)
    url = f"/api/v1/public/trainings/{training['id']}/registrations"
    missing = visits_client.post(url, json={})
    assert missing.status_code == 422 and missing.mimetype == PROBLEM
    assert set(missing.get_json()["errors"]) >= {"name", "email"}
    assert missing.get_json()["errors"]["email"] == ["Dieses Feld ist erforderlich."]
    bad_email = visits_client.post(url, json={"name": "A", "email": "kein-at"})
    assert bad_email.status_code == 422
    assert "gültige E-Mail" in bad_email.get_json()["errors"]["email"][0]
    assert visits_client.post(url, data="name=A", content_type="text/plain").status_code == 415

    draft = _training(visits_client, coordinator, status="draft")
    assert _sign_up(visits_client, draft["id"], unique_email()).status_code == 404
    assert _sign_up(visits_client, str(uuid.uuid4()), unique_email()).status_code == 404

    cancelled = _training(visits_client, coordinator)
    visits_client.patch(
        f"/api/v1/trainings/{cancelled['id']}",
        json={"status": "cancelled"},
        headers=auth(coordinator),
    )
    response = _sign_up(visits_client, cancelled["id"], unique_email())
    assert response.status_code == 409 and "abgesagt" in response.get_json()["detail"]

    now = utcnow()
    closed = _training(
        visits_client,
        coordinator,
        signup_deadline=(now - timedelta(hours=1)).isoformat(),
        starts_at=(now + timedelta(days=1)).isoformat(),
        ends_at=(now + timedelta(days=1, hours=2)).isoformat(),
    )
    response = _sign_up(visits_client, closed["id"], unique_email())
    assert response.status_code == 409 and "Anmeldefrist" in response.get_json()["detail"]

    past = _training(
        visits_client,
        coordinator,
        starts_at=(now - timedelta(days=2)).isoformat(),
        ends_at=(now - timedelta(days=2) + timedelta(hours=2)).isoformat(),
    )
    assert _sign_up(visits_client, past["id"], unique_email()).status_code == 409


def _expired_token(secret: str, purpose: str, registration_id: str) -> str:
    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3 * 24 * 3600

    return URLSafeTimedSerializer(secret, salt=f"quartier.{purpose}", signer=OldSigner).dumps(
        {"r": registration_id}
    )


def test_forged_expired_and_misused_links(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator)
    registration_id = _sign_up(visits_client, training["id"], unique_email()).get_json()["id"]
    base = "/api/v1/public/registrations"

    forged = visits_client.get(f"{base}/not-a-real-token/confirm")
    assert forged.status_code == 404 and forged.mimetype == "text/html"
    assert "Dieser Link ist ungültig" in forged.get_data(as_text=True)
    forged_json = visits_client.post(f"{base}/not-a-real-token/confirm", headers=JSON)
    assert forged_json.status_code == 404 and forged_json.mimetype == PROBLEM

    # A cancel link cannot confirm (the purpose is part of the signature).
    cancel_token = services.link_token(
        secret_key, services.CANCEL_PURPOSE, uuid.UUID(registration_id)
    )
    assert visits_client.post(f"{base}/{cancel_token}/confirm").status_code == 404

    expired = _expired_token(secret_key, services.CONFIRM_PURPOSE, registration_id)
    page = visits_client.get(f"{base}/{expired}/confirm")
    assert page.status_code == 410 and "abgelaufen" in page.get_data(as_text=True)

    unknown = services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.uuid4())
    assert visits_client.post(f"{base}/{unknown}/confirm", headers=JSON).status_code == 404


def test_pending_sign_ups_expire_and_their_link_then_says_so(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator)
    with get_database(visits_app).session() as session:
        # Sign-ups other tests left pending expire first: the counts below are this one's.
        services.expire_pending(session, now=utcnow() + timedelta(hours=49))
    registration_id = _sign_up(visits_client, training["id"], unique_email()).get_json()["id"]
    with get_database(visits_app).session() as session:
        assert services.expire_pending(session, now=utcnow() + timedelta(hours=47)) == 0
        assert session.get(Registration, uuid.UUID(registration_id)).status == "pending"
    with visits_app.app_context(), get_database(visits_app).session() as session:
        assert services.expire_pending(session, now=utcnow() + timedelta(hours=49)) == 1
        assert session.get(Registration, uuid.UUID(registration_id)).status == "expired"
    token = services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id))
    response = visits_client.post(f"/api/v1/public/registrations/{token}/confirm")
    assert response.status_code == 410
    assert "verfallen" in response.get_data(as_text=True)


def test_newsletter_tick_becomes_an_event_on_confirmation_never_a_consent(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator)
    ticked, unticked = unique_email(), unique_email()
    org = seed_organisation(visits_app)
    ids = {}
    for email, newsletter in ((ticked, True), (unticked, False)):
        response = _sign_up(
            visits_client,
            training["id"],
            email,
            newsletter=newsletter,
            organisation_name=org["name"].upper(),
        )
        ids[email] = response.get_json()["id"]

    def events(registration_id: str) -> list[OutboxEvent]:
        with get_database(visits_app).session() as session:
            return list(
                session.scalars(
                    select(OutboxEvent).where(OutboxEvent.aggregate_id == registration_id)
                )
            )

    assert events(ids[ticked]) == []  # nothing before the address is confirmed
    for email in (ticked, unticked):
        token = services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.UUID(ids[email]))
        assert (
            visits_client.post(f"/api/v1/public/registrations/{token}/confirm").status_code == 200
        )
    (event,) = events(ids[ticked])
    assert event.type == "visits.registration.newsletter_requested"
    assert event.payload["email"] == ticked
    assert event.payload["training_id"] == training["id"]
    assert event.payload["training_title"] == training["title"]
    assert set(event.payload) == {
        "email",
        "name",
        "organisation_name",
        "training_id",
        "training_title",
        "requested_at",
        "ip",
        "user_agent",
        "consent_text_version",
    }
    assert events(ids[unticked]) == []
    # The organisation name matched the projection (case does not matter).
    registration = visits_client.get(
        f"/api/v1/registrations/{ids[ticked]}", headers=auth(coordinator)
    ).get_json()
    assert registration["organisation_id"] == org["id"]
    assert registration["newsletter"] is True


def test_cancelling_a_training_tells_every_registrant(
    visits_client: FlaskClient,
    smtp_sink: SinkHandler,
    celery_worker_for: Any,
    coordinator: str,
    secret_key: str,
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator, capacity=1)
    confirmed, waitlisted, pending = (unique_email() for _ in range(3))
    for email in (confirmed, waitlisted, pending):
        registration_id = _sign_up(visits_client, training["id"], email).get_json()["id"]
        if email != pending:
            token = services.link_token(
                secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id)
            )
            visits_client.post(f"/api/v1/public/registrations/{token}/confirm")
    response = visits_client.patch(
        f"/api/v1/trainings/{training['id']}",
        json={"status": "cancelled"},
        headers=auth(coordinator),
    )
    assert response.status_code == 200
    for email in (confirmed, waitlisted, pending):
        wait_until(lambda e=email: f"Abgesagt: {training['title']}" in _subjects(smtp_sink, e))
    cancel_mail = next(
        m for m in smtp_sink.to(confirmed) if str(m.message()["Subject"]).startswith("Abgesagt")
    )
    attachment = next(cancel_mail.message().iter_attachments())
    assert attachment.get_param("method") == "CANCEL"
    assert "METHOD:CANCEL" in attachment.get_content()


def test_reminders_the_day_before_and_attendance_after(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    tomorrow = (datetime_now_berlin() + timedelta(days=1)).replace(hour=9, minute=0)
    training = _training(
        visits_client,
        coordinator,
        starts_at=tomorrow.isoformat(),
        ends_at=(tomorrow + timedelta(hours=3)).isoformat(),
    )
    registration_id = _sign_up(visits_client, training["id"], unique_email()).get_json()["id"]
    token = services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id))
    visits_client.post(f"/api/v1/public/registrations/{token}/confirm")
    with visits_app.app_context(), get_database(visits_app).session() as session:
        assert services.queue_reminders(session) >= 1
        assert services.queue_reminders(session) == 0  # once per training
        reminders = session.scalars(
            select(services.Mail).where(
                services.Mail.registration_id == uuid.UUID(registration_id),
                services.Mail.kind == "reminder",
            )
        ).all()
        assert len(reminders) == 1

    url = f"/api/v1/registrations/{registration_id}"
    early = visits_client.patch(url, json={"attended": True}, headers=auth(coordinator))
    assert early.status_code == 409
    with visits_app.app_context(), get_database(visits_app).session() as session:
        services.mark_attendance(
            session, uuid.UUID(registration_id), True, now=utcnow() + timedelta(days=2)
        )
    shown = visits_client.get(url, headers=auth(coordinator)).get_json()
    assert shown["attended"] is True


def datetime_now_berlin() -> Any:
    from datetime import datetime

    return datetime.now(services.BERLIN).replace(second=0, microsecond=0)


def test_public_sign_up_is_rate_limited_per_client(
    make_settings: Callable[..., Any], visits_client: FlaskClient, coordinator: str
) -> None:
    from services.visits.app import create_app

    training = _training(visits_client, coordinator)
    app = create_app(
        make_settings(
            "visits",
            ratelimit_enabled=True,
            ratelimit_public="3 per minute",
            redis_url=make_settings("visits").redis_url.rsplit("/", 1)[0] + "/9",
        )
    )
    client = app.test_client()
    client_ip = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    answers = [
        client.post(
            f"/api/v1/public/trainings/{training['id']}/registrations",
            json={"name": "A", "email": unique_email()},
            environ_base={"REMOTE_ADDR": client_ip},
        )
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[-1].mimetype == PROBLEM
    assert answers[-1].headers["Retry-After"].isdigit()
    assert "Retry-After" not in answers[0].headers  # a success tells nobody to wait
    assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    other = client.post(
        f"/api/v1/public/trainings/{training['id']}/registrations",
        json={"name": "B", "email": unique_email()},
        environ_base={"REMOTE_ADDR": "10.8.0.1"},
    )
    assert other.status_code == 202
    close_app(app)


def test_moving_a_training_sends_the_updated_calendar_entry_to_those_with_a_seat(
    visits_client: FlaskClient,
    smtp_sink: SinkHandler,
    celery_worker_for: Any,
    coordinator: str,
    secret_key: str,
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator, capacity=1)
    seated, pending = unique_email(), unique_email()
    for email in (seated, pending):
        registration_id = _sign_up(visits_client, training["id"], email).get_json()["id"]
        if email == seated:
            token = services.link_token(
                secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id)
            )
            visits_client.post(f"/api/v1/public/registrations/{token}/confirm")
    visits_client.patch(
        f"/api/v1/trainings/{training['id']}",
        json={"location_name": "Ortsamt Nordwest 2"},
        headers=auth(coordinator),
    )
    changed = f"Geänderter Termin: {training['title']}"
    wait_until(lambda: changed in _subjects(smtp_sink, seated))
    mail = next(m for m in smtp_sink.to(seated) if str(m.message()["Subject"]) == changed)
    ics = next(mail.message().iter_attachments()).get_content()
    assert "SEQUENCE:1" in ics and "Ortsamt Nordwest 2" in ics
    assert changed not in _subjects(smtp_sink, pending)


def test_more_seats_promote_from_the_waitlist_and_fewer_than_taken_are_refused(
    visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator, capacity=1)
    ids = []
    for _ in range(3):
        registration_id = _sign_up(visits_client, training["id"], unique_email()).get_json()["id"]
        token = services.link_token(
            secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id)
        )
        answer = visits_client.post(f"/api/v1/public/registrations/{token}/confirm", headers=JSON)
        assert answer.status_code == 200
        ids.append(registration_id)
    url = f"/api/v1/trainings/{training['id']}"
    more = visits_client.patch(url, json={"capacity": 2}, headers=auth(coordinator))
    assert (more.get_json()["confirmed"], more.get_json()["waitlisted"]) == (2, 1)
    registrations = visits_client.get(f"{url}/registrations", headers=auth(coordinator)).get_json()
    # First come, first served: the second to confirm moved up, the third is now first in line.
    by_id = {r["id"]: r for r in registrations}
    assert by_id[ids[1]]["status"] == "confirmed"
    assert (by_id[ids[2]]["status"], by_id[ids[2]]["waitlist_position"]) == ("waitlisted", 1)
    fewer = visits_client.patch(url, json={"capacity": 1}, headers=auth(coordinator))
    assert fewer.status_code == 422 and "capacity" in fewer.get_json()["errors"]


def test_an_expired_sign_up_can_start_afresh_and_links_answer_json_on_request(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator)
    email = unique_email()
    registration_id = _sign_up(visits_client, training["id"], email).get_json()["id"]
    with get_database(visits_app).session() as session:
        services.expire_pending(session, now=utcnow() + timedelta(hours=49))
    again = _sign_up(visits_client, training["id"], email)
    assert again.status_code == 202 and again.get_json()["id"] == registration_id
    token = services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id))
    shown = visits_client.get(f"/api/v1/public/registrations/{token}/confirm", headers=JSON)
    assert shown.status_code == 200 and shown.get_json()["status"] == "pending"
    done = visits_client.post(f"/api/v1/public/registrations/{token}/confirm", headers=JSON)
    assert done.get_json() == {
        "id": registration_id,
        "training_id": training["id"],
        "status": "confirmed",
        "waitlist_position": None,
    }


def test_a_blank_name_is_refused_in_german(visits_client: FlaskClient, coordinator: str) -> None:
    training = _training(visits_client, coordinator)
    response = _sign_up(visits_client, training["id"], unique_email(), name="   ")
    assert response.status_code == 422
    assert response.get_json()["errors"]["name"] == ["Bitte geben Sie Ihren Namen an."]


def test_a_fully_booked_training_with_a_full_waitlist_refuses_clearly(
    visits_app: Flask, visits_client: FlaskClient, coordinator: str, secret_key: str
) -> None:
    training = _training(visits_client, coordinator, capacity=1, waitlist_limit=1)
    ids = [
        _sign_up(visits_client, training["id"], unique_email()).get_json()["id"] for _ in range(3)
    ]
    answers = []
    for registration_id in ids:
        token = services.link_token(
            secret_key, services.CONFIRM_PURPOSE, uuid.UUID(registration_id)
        )
        answers.append(
            visits_client.post(f"/api/v1/public/registrations/{token}/confirm", headers=JSON)
        )
    assert [a.status_code for a in answers] == [200, 200, 409]
    assert [a.get_json().get("status") for a in answers[:2]] == ["confirmed", "waitlisted"]
    assert "ausgebucht" in answers[2].get_json()["detail"]
    with get_database(visits_app).session() as session:
        assert session.get(Registration, uuid.UUID(ids[2])).status == "pending"  # type: ignore[union-attr]

    late = _sign_up(visits_client, training["id"], unique_email())
    assert late.status_code == 409 and late.mimetype == PROBLEM
    assert "ausgebucht" in late.get_json()["detail"]
    page = visits_client.post(
        f"/api/v1/public/registrations/"
        f"{services.link_token(secret_key, services.CONFIRM_PURPOSE, uuid.UUID(ids[2]))}/confirm"
    )
    assert page.status_code == 409 and "ausgebucht" in page.get_data(as_text=True)


def test_line_breaks_of_any_kind_in_names_and_titles_are_422(
    visits_client: FlaskClient, coordinator: str
) -> None:
    training = _training(visits_client, coordinator)
    for breaking in ("\r\n", "\u2028", "\x85", "\x0c"):
        response = _sign_up(
            visits_client, training["id"], unique_email(), name=f"Eve{breaking}Bcc: x"
        )
        assert response.status_code == 422, breaking
        assert "name" in response.get_json()["errors"]
    titled = visits_client.post(
        "/api/v1/trainings", json=training_body(title="Kurs\u2029Teil 2"), headers=auth(coordinator)
    )
    assert titled.status_code == 422
    assert "title" in titled.get_json()["errors"]


def test_people_sign_up_on_the_german_form_page(
    visits_client: FlaskClient, coordinator: str, smtp_sink: SinkHandler, celery_worker_for: Any
) -> None:
    celery_worker_for("visits")
    training = _training(visits_client, coordinator)
    signup_url = visits_client.get(f"/api/v1/public/trainings/{training['id']}").get_json()[
        "signup_url"
    ]
    path = signup_url.split("://", 1)[1].split("/", 1)[1]
    form = visits_client.get(f"/{path}")
    assert form.status_code == 200
    page = form.get_data(as_text=True)
    assert "Zur Schulung anmelden" in page and training["title"] in page
    assert 'name="newsletter"' in page and "checked" not in page  # never pre-ticked

    bad = visits_client.post(f"/{path}", data={"name": "Eve", "email": "kein-mail"})
    assert bad.status_code == 422
    assert "gültige E-Mail-Adresse" in bad.get_data(as_text=True)
    nul = visits_client.post(f"/{path}", data={"name": "Eve\x00", "email": unique_email()})
    assert nul.status_code == 422 and nul.mimetype == "text/html"

    email = unique_email("formular")
    done = visits_client.post(
        f"/{path}", data={"name": "Jürgen <b>Müller</b>", "email": email, "organisation_name": ""}
    )
    assert done.status_code == 200
    assert "Fast geschafft" in done.get_data(as_text=True)
    request_mail = wait_until(lambda: smtp_sink.to(email), timeout=30)[0]
    assert "/confirm" in link_path(request_mail, "confirm")

    draft = visits_client.post(
        "/api/v1/trainings", json=training_body(status="draft"), headers=auth(coordinator)
    )
    missing = visits_client.get(f"/api/v1/public/trainings/{draft.get_json()['id']}/signup")
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"
