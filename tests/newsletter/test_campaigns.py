"""Campaigns end to end: compose, send to two lists through a real Celery worker into a
real SMTP server, read the mails, one-click unsubscribe, send again."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.newsletter.models import Subscriber, Subscription
from shared.api import BERLIN
from shared.db import get_database
from shared.smtp_sink import SinkHandler
from shared.testing import auth, unique_email, wait_until

from .conftest import html_of, one_mail, parse, path_of, text_of

BODY = """# Neues aus dem Netzwerk

Hallo {{ name }} von {{ organisation }},

am **7. Dezember** treffen wir uns im Stadtteilzentrum Groß Klein.

- Gründerstammtisch
- Fördermittel-Sprechstunde
"""


def _campaign(
    client: FlaskClient, headers: dict[str, str], list_ids: list[str], **values: Any
) -> dict[str, Any]:
    payload = {"subject": "Einladung: Netzwerktreffen in Groß Klein", "preheader": "Am 7. Dezember",
               "body": BODY, "list_ids": list_ids, **values}  # fmt: skip
    response = client.post("/api/v1/campaigns", json=payload, headers=headers)
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def _finished(client: FlaskClient, headers: dict[str, str], campaign_id: str) -> dict[str, Any]:
    def done() -> Any:
        progress = client.get(f"/api/v1/campaigns/{campaign_id}/progress", headers=headers)
        body = progress.get_json()
        return body if body["state"] in ("sent", "paused", "cancelled") else None

    return dict(wait_until(done, timeout=60, interval=0.2))


def test_campaign_to_two_lists_then_one_click_unsubscribe_then_no_more_mail(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    newsletter_worker: Any,
    smtp_sink: SinkHandler,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    schmarl, gross_klein = make_list(), make_list()
    both = add_subscribers([schmarl, gross_klein], 1, names=['Jürgen "Jo" <Müller>'])
    only_a = add_subscribers([schmarl], 2)
    only_b = add_subscribers([gross_klein], 2)
    campaign = _campaign(newsletter_client, writer, [schmarl, gross_klein])
    sent = newsletter_client.post(f"/api/v1/campaigns/{campaign['id']}/send", headers=writer)
    assert sent.status_code == 202
    again = newsletter_client.post(f"/api/v1/campaigns/{campaign['id']}/send", headers=writer)
    assert again.status_code == 409

    progress = _finished(newsletter_client, writer, campaign["id"])
    assert progress["state"] == "sent", progress
    assert progress["sent"] == 5, progress
    assert progress["total"] == progress["sent"] == 5
    for address in [*both, *only_a, *only_b]:
        assert len(smtp_sink.to(address)) == 1, address
    assert (
        newsletter_client.post(
            f"/api/v1/campaigns/{campaign['id']}/send", headers=writer
        ).status_code
        == 409
    )

    mail = parse(smtp_sink.to(both[0])[0])
    raw_head = smtp_sink.to(both[0])[0].raw.split(b"\r\n\r\n", 1)[0]
    raw_head.decode("ascii")  # RFC 2047: no raw 8-bit in headers
    assert mail["Subject"] == "Einladung: Netzwerktreffen in Groß Klein"
    assert mail["To"].addresses[0].display_name == 'Jürgen "Jo" <Müller>'
    assert mail["Message-ID"] and mail["Date"]
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_header = str(mail["List-Unsubscribe"])
    assert "<mailto:" in unsubscribe_header
    one_click = unsubscribe_header.split("<")[1].split(">")[0]
    assert one_click.startswith("http") and "/unsubscribe/" in one_click

    text, html = text_of(mail), html_of(mail)
    assert 'Hallo Jürgen "Jo" <Müller> von' in text  # raw in text
    assert "Hallo Jürgen &quot;Jo&quot; &lt;Müller&gt; von" in html  # escaped in HTML
    assert "<strong>7. Dezember</strong>" in html and "Am 7. Dezember" in html
    company = newsletter_app.config["QUARTIER_SETTINGS"].company
    for detail in (company.name, company.address, company.register, company.managing_directors):
        assert detail in text and detail in html
    assert one_click in text

    # RFC 8058: GET shows a page and changes nothing; POST without cookie unsubscribes.
    page = newsletter_client.get(path_of(one_click))
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    with get_database(newsletter_app).session() as session:
        statuses = set(
            session.scalars(
                select(Subscription.status)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscriber.email == both[0])
            )
        )
    assert statuses == {"confirmed"}
    fresh = newsletter_app.test_client(use_cookies=False)
    for _ in range(2):  # a second POST is harmless
        done = fresh.post(
            path_of(one_click),
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
        assert done.status_code == 200
    stats = newsletter_client.get(f"/api/v1/campaigns/{campaign['id']}/progress", headers=writer)
    assert stats.get_json()["unsubscribed"] == 1

    follow_up = _campaign(newsletter_client, writer, [schmarl, gross_klein], subject="Nachtrag")
    newsletter_client.post(f"/api/v1/campaigns/{follow_up['id']}/send", headers=writer)
    finished = _finished(newsletter_client, writer, follow_up["id"])
    assert finished["sent"] == 4, finished
    assert len(smtp_sink.to(both[0])) == 1
    assert all(len(smtp_sink.to(a)) == 2 for a in only_a + only_b)


def test_a_mail_to_the_list_unsubscribe_mailto_unsubscribes_the_token_s_subscriber(
    newsletter_worker: Any,
    smtp_sink: SinkHandler,
    make_list: Callable[..., str],
    staff_token: Callable[[str], str],
    add_subscribers: Callable[..., list[str]],
    writer: dict[str, str],
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
) -> None:
    lists = [make_list(), make_list()]
    leaving, staying = add_subscribers(lists, 2)
    other_list = make_list()  # not in the campaign: a request by mail leaves it alone
    also = newsletter_client.post(
        "/api/v1/subscribers/import",
        json={"list_ids": [other_list], "source": "import", "consent_text_version": "2026-01",
              "consented_at": datetime.now(UTC).isoformat(), "note": "Formular",
              "subscribers": [{"email": leaving}]},
        headers=writer,
    )  # fmt: skip
    assert also.status_code == 200, also.get_json()
    campaign = _campaign(newsletter_client, writer, lists)
    newsletter_client.post(f"/api/v1/campaigns/{campaign['id']}/send", headers=writer)
    assert _finished(newsletter_client, writer, campaign["id"])["sent"] == 2
    header = str(parse(smtp_sink.to(leaving)[0])["List-Unsubscribe"])
    mailto = urlsplit(header.split("<mailto:")[1].split(">")[0])
    request = EmailMessage()
    request["From"], request["To"] = leaving, mailto.path
    request["Subject"] = "AW: " + parse_qs(mailto.query)["subject"][0]  # as a client sends it
    request.set_content("Bitte abmelden.")
    url = "/api/v1/unsubscribe-requests"

    def post(raw: bytes, headers: dict[str, str] = writer) -> Any:
        return newsletter_client.post(url, data=raw, content_type="message/rfc822", headers=headers)

    assert post(request.as_bytes(), auth(staff_token("viewer"))).status_code == 403
    for _ in range(2):  # a second request is harmless
        done = post(request.as_bytes())
        assert done.status_code == 202, done.get_json()
    with get_database(newsletter_app).session() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == leaving)).one()
        statuses = set(
            session.scalars(
                select(Subscription.status).where(Subscription.subscriber_id == subscriber.id)
            )
        )
    assert done.get_json() == {"subscriber_id": str(subscriber.id)}
    assert statuses == {"unsubscribed", "confirmed"} and subscriber.state == "active"
    assert _finished(newsletter_client, writer, campaign["id"])["unsubscribed"] == 1
    del request["Subject"]
    request["Subject"] = "unsubscribe-" + "x" * 32
    assert post(request.as_bytes()).status_code == 404
    del request["Subject"]  # the form of earlier mails, without the campaign: every list
    request["Subject"] = f"unsubscribe-{subscriber.token}"
    assert post(request.as_bytes()).status_code == 202
    with get_database(newsletter_app).session() as session:
        statuses = set(
            session.scalars(
                select(Subscription.status).where(Subscription.subscriber_id == subscriber.id)
            )
        )
    assert statuses == {"unsubscribed"}
    assert post(b"Subject: Hallo\r\n\r\nkein Token").status_code == 422

    follow_up = _campaign(newsletter_client, writer, lists, subject="Nachtrag")
    newsletter_client.post(f"/api/v1/campaigns/{follow_up['id']}/send", headers=writer)
    assert _finished(newsletter_client, writer, follow_up["id"])["sent"] == 1
    assert len(smtp_sink.to(leaving)) == 1 and len(smtp_sink.to(staying)) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Hallo\r\nBcc: opfer@example.org"}, "subject"),
        ({"subject": "Hallo\u2028Bcc: opfer@example.org"}, "subject"),
        ({"subject": "Hallo\x85Welt"}, "subject"),
        ({"preheader": "Vorschau\u2029mehr"}, "preheader"),
        ({"subject": ""}, "subject"),
        ({"name": "x\ny"}, "name"),
        ({"body_format": "html", "body": "<p>Hi</p><script>alert(1)</script>"}, "body"),
        ({"body_format": "html", "body": '<a href="#" onclick="steal()">x</a>'}, "body"),
        ({"list_ids": []}, "list_ids"),
        ({"list_ids": [str(uuid.uuid4())]}, "list_ids"),
    ],
)
def test_bad_campaigns_are_refused(
    newsletter_client: FlaskClient,
    writer: dict[str, str],
    make_list: Callable[..., str],
    change: dict[str, Any],
    field: str,
) -> None:
    payload = {"subject": "Betreff", "body": "Text", "list_ids": [make_list()], **change}
    response = newsletter_client.post("/api/v1/campaigns", json=payload, headers=writer)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]


def test_empty_list_and_bad_test_address_are_refused_and_nothing_is_sent(
    newsletter_client: FlaskClient,
    smtp_sink: SinkHandler,
    writer: dict[str, str],
    make_list: Callable[..., str],
) -> None:
    subject = f"Leere Liste {uuid.uuid4().hex[:8]}"

    def sent() -> list[str]:
        return [
            m.message()["Subject"] for m in smtp_sink.messages if subject in m.message()["Subject"]
        ]

    campaign = _campaign(newsletter_client, writer, [make_list()], subject=subject)
    response = newsletter_client.post(f"/api/v1/campaigns/{campaign['id']}/send", headers=writer)
    assert response.status_code == 422
    state = newsletter_client.get(f"/api/v1/campaigns/{campaign['id']}", headers=writer)
    assert state.get_json()["state"] == "draft"
    bad = newsletter_client.post(
        f"/api/v1/campaigns/{campaign['id']}/test", json={"email": "a@b\r\nc"}, headers=writer
    )
    assert bad.status_code == 422
    assert sent() == []
    # (A test to a good address arrives, so the sink is where it would be seen.)
    good = newsletter_client.post(
        f"/api/v1/campaigns/{campaign['id']}/test", json={"email": unique_email()}, headers=writer
    )
    assert good.status_code == 204
    assert sent() == [f"[Test] {subject}"]


def test_sanitised_html_campaign_and_test_send(
    newsletter_client: FlaskClient,
    smtp_sink: SinkHandler,
    writer: dict[str, str],
    make_list: Callable[..., str],
) -> None:
    campaign = _campaign(
        newsletter_client,
        writer,
        [make_list()],
        body_format="html",
        body='<h2>Hallo {{ name }}</h2><p>Mehr <a href="https://example.org/x">hier</a>.</p>'
        "<ul><li>Erstens</li><li>Zweitens &amp; Drittens</li></ul>",
    )
    address = unique_email("test")
    response = newsletter_client.post(
        f"/api/v1/campaigns/{campaign['id']}/test",
        json={"email": address, "name": "<b>Ö</b>"},
        headers=writer,
    )
    assert response.status_code == 204
    mail = one_mail(smtp_sink, address)
    assert mail["Subject"].startswith("[Test]")
    assert "Hallo &lt;b&gt;Ö&lt;/b&gt;" in html_of(mail)
    assert "Hallo <b>Ö</b>" in text_of(mail)
    assert 'href="https://example.org/x"' in html_of(mail)
    text = text_of(mail)  # laid out as text: links, list items, entities
    assert "Mehr [hier](https://example.org/x)." in text
    assert "* Erstens" in text and "* Zweitens & Drittens" in text
    assert "<p>" not in text and "<li>" not in text and "&amp;" not in text


def test_pause_resume_cancel_and_schedule(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    from services.newsletter import campaigns as use_cases

    list_id = make_list()
    add_subscribers([list_id], 3)
    campaign = _campaign(newsletter_client, writer, [list_id])
    base = f"/api/v1/campaigns/{campaign['id']}"
    assert newsletter_client.post(f"{base}/pause", headers=writer).status_code == 409
    past = newsletter_client.post(
        f"{base}/schedule", json={"at": "2020-01-01T09:00:00+01:00"}, headers=writer
    )
    assert past.status_code == 422
    at = datetime.now(UTC) + timedelta(hours=1)
    # A time without an offset is Berlin's, and times come back in Berlin time, as in the
    # other services.
    naive = at.astimezone(BERLIN).replace(tzinfo=None).isoformat()
    scheduled = newsletter_client.post(f"{base}/schedule", json={"at": naive}, headers=writer)
    assert scheduled.get_json()["state"] == "scheduled"
    assert scheduled.get_json()["scheduled_at"] == at.astimezone(BERLIN).isoformat()
    with newsletter_app.app_context(), get_database(newsletter_app).session() as session:
        assert uuid.UUID(campaign["id"]) not in use_cases.due_campaigns(session, datetime.now(UTC))
    # No worker runs here: the state machine alone.
    with newsletter_app.app_context(), get_database(newsletter_app).session() as session:
        started = use_cases.due_campaigns(session, datetime.now(UTC) + timedelta(hours=2))
    assert uuid.UUID(campaign["id"]) in started
    assert newsletter_client.post(f"{base}/send", headers=writer).status_code == 409
    assert newsletter_client.post(f"{base}/pause", headers=writer).get_json()["state"] == "paused"
    assert newsletter_client.post(f"{base}/resume", headers=writer).get_json()["state"] == "sending"
    assert (
        newsletter_client.post(f"{base}/cancel", headers=writer).get_json()["state"] == "cancelled"
    )
    assert newsletter_client.post(f"{base}/cancel", headers=writer).status_code == 409
    assert newsletter_client.patch(base, json={"subject": "x"}, headers=writer).status_code == 409


def test_segment_narrows_by_district_kind_and_needs(
    newsletter_app: Flask,
    newsletter_client: FlaskClient,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    from services.newsletter import campaigns as use_cases
    from services.newsletter.models import Campaign, Organisation

    list_id = make_list()
    in_schmarl, in_gross_klein, at_archived, _without_organisation = add_subscribers([list_id], 4)
    district = f"Schmarl-{uuid.uuid4().hex[:6]}"
    with get_database(newsletter_app).session() as session:
        placed = [
            (in_schmarl, district, "business", ["fachkraefte", "digitalisierung"], False),
            (in_gross_klein, "Groß Klein", "landlord", ["digitalisierung"], False),
            (at_archived, district, "business", ["fachkraefte", "digitalisierung"], True),
        ]
        for address, where, kind, needs, archived in placed:
            org = Organisation(id=uuid.uuid4(), name="Betrieb", kind=kind, district=where,
                               needs=needs, archived=archived, version=1)  # fmt: skip
            session.add(org)
            session.flush()
            session.execute(
                Subscriber.__table__.update()
                .where(Subscriber.email == address)
                .values(organisation_id=org.id)
            )
        session.commit()
        campaign = Campaign(subject="x", body="y", list_ids=[uuid.UUID(list_id)], segment={})

        def recipients(**segment: list[str]) -> int:
            campaign.segment = segment
            return use_cases.count_recipients(session, campaign)

        assert recipients() == 4  # also those without an organisation or at an archived one
        assert recipients(districts=[district]) == 1
        assert recipients(kinds=["business"]) == 1
        assert recipients(kinds=["landlord"]) == 1
        assert recipients(kinds=["business", "landlord"]) == 2
        assert recipients(kinds=["partner"]) == 0
        assert recipients(needs=["digitalisierung"]) == 2
        assert recipients(needs=["digitalisierung"], kinds=["landlord"]) == 1
        assert recipients(needs=["fachkraefte"], kinds=["landlord"]) == 0
        assert recipients(districts=[district], needs=["digitalisierung"], kinds=["business"]) == 1
        assert recipients(districts=["Groß Klein"], needs=["fachkraefte"]) == 0
        session.rollback()


def test_unsubscribe_takes_effect_for_mails_not_yet_sent(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    celery_worker_for: Callable[..., Any],
    smtp_sink: SinkHandler,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    from services.newsletter import campaigns as use_cases

    list_id = make_list()
    leaving, *staying = add_subscribers([list_id], 3)
    campaign = _campaign(newsletter_client, writer, [list_id])
    campaign_id = uuid.UUID(campaign["id"])
    with newsletter_app.app_context(), get_database(newsletter_app).session() as session:
        use_cases.start_campaign(session, campaign_id)
        use_cases.prepare_campaign(session, campaign_id, parallelism=1)  # rows queued, no worker
        token = session.scalar(select(Subscriber.token).where(Subscriber.email == leaving))
    client = newsletter_app.test_client(use_cookies=False)
    for garbled in (f"{token}%00", "%00", "x" * 300):
        assert client.post(f"/api/v1/public/unsubscribe/{campaign_id}/{garbled}").status_code == 404
    assert client.post(f"/api/v1/public/unsubscribe/{campaign_id}/{token}").status_code == 200

    celery_worker_for("newsletter")
    progress = _finished(newsletter_client, writer, campaign["id"])
    assert progress["sent"] == 2 and progress["skipped"] == 1
    assert smtp_sink.to(leaving) == []
    assert all(len(smtp_sink.to(a)) == 1 for a in staying)


def test_public_subscribe_is_rate_limited(
    make_settings: Callable[..., Any], make_list: Callable[..., str]
) -> None:
    from services.newsletter.app import create_app
    from shared.testing import unique_email

    app = create_app(
        make_settings("newsletter", ratelimit_enabled=True, ratelimit_public="2 per minute")
    )
    client = app.test_client()
    list_id = make_list()
    ip = {"REMOTE_ADDR": f"192.0.2.{uuid.uuid4().int % 250 + 1}"}
    try:
        answers = [
            client.post(
                "/api/v1/public/subscriptions",
                json={"email": unique_email(), "list_ids": [list_id]},
                environ_base=ip,
            ).status_code
            for _ in range(3)
        ]
    finally:
        get_database(app).dispose()
    assert answers == [202, 202, 429]
