"""The bounce endpoint (DSN and JSON) and the compiled campaign message."""

from __future__ import annotations

import email
import uuid
from collections.abc import Callable
from email.policy import default as default_policy

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.newsletter.models import Bounce, Subscriber, Suppression
from services.newsletter.rendering import compile_campaign
from shared.db import get_database
from shared.settings import CompanyDetails
from shared.smtp_sink import SinkHandler

DSN = """From: MAILER-DAEMON@mx.example.org
To: noreply@quartier.localhost
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {hard}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

Final-Recipient: rfc822; {soft}
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B--
"""


def test_dsn_and_json_bounces_are_recorded_and_hard_ones_suppress(
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    hard, soft, by_json = add_subscribers([make_list()], 3)
    body = DSN.format(hard=hard, soft=soft).replace("\n", "\r\n").encode()
    response = newsletter_client.post(
        "/api/v1/bounces",
        data=body,
        content_type="multipart/report; report-type=delivery-status; boundary=B",
        headers=writer,
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"recorded": 2}
    json_bounce = newsletter_client.post(
        "/api/v1/bounces",
        json={"email": by_json, "type": "hard", "status": "5.1.1", "diagnostic": "gone"},
        headers=writer,
    )
    assert json_bounce.status_code == 202
    assert (
        newsletter_client.post(
            "/api/v1/bounces", json={"email": "x", "type": "weird"}, headers=writer
        ).status_code
        == 422
    )
    nul = newsletter_client.post(
        "/api/v1/bounces",
        json={"email": by_json, "type": "soft", "status": "4.2.2\x00"},
        headers=writer,
    )
    assert nul.status_code == 422 and list(nul.get_json()["errors"]) == ["status"]
    assert (
        newsletter_client.post(
            "/api/v1/bounces", data=b"no report here", content_type="message/rfc822", headers=writer
        ).status_code
        == 422
    )
    # NUL characters from a broken mail server: the diagnostic loses them, and a recipient
    # carrying one is no address of ours.
    garbled = (
        DSN.format(hard=hard, soft="bad\x00@example.org")
        .replace("User unknown", "User\x00unknown")
        .replace("\n", "\r\n")
        .encode()
    )
    again = newsletter_client.post(
        "/api/v1/bounces", data=garbled, content_type="message/rfc822", headers=writer
    )
    assert again.status_code == 202 and again.get_json() == {"recorded": 1}
    with get_database(newsletter_app).session() as session:
        bounces = {
            b.email: b
            for b in session.scalars(select(Bounce).where(Bounce.email.in_([hard, soft, by_json])))
        }
        states = dict(
            session.execute(
                select(Subscriber.email, Subscriber.state).where(
                    Subscriber.email.in_([hard, soft, by_json])
                )
            ).all()
        )
        suppressed = set(
            session.scalars(
                select(Suppression.email).where(Suppression.email.in_([hard, soft, by_json]))
            )
        )
    assert bounces[hard].hard and not bounces[soft].hard and bounces[by_json].source == "json"
    assert states == {hard: "bounced", soft: "active", by_json: "bounced"}
    assert suppressed == {hard, by_json}


def test_compiled_campaign_is_a_correct_mime_message_per_recipient() -> None:
    compiled = compile_campaign(
        campaign_id=uuid.uuid4(),
        sender="Wirtschaftsförderung Rostock <netzwerk@example.org>",
        subject="Grüße aus Groß Klein – Ausgabe Dezember",
        preheader="Vorschau <b>",
        body="Hallo {{ name }} ({{organisation}})\n\n" + "Eine sehr lange Zeile. " * 40,
        body_format="markdown",
        explicit_text=None,
        company=CompanyDetails(),
    )
    rendered = [
        compiled.render(
            key=f"c.{i}",
            email=f"r{i}@example.org",
            name=name,
            organisation="Bäckerei & Söhne",
            token=f"tok{i}",
            unsubscribe_url=f"https://n.example.org/u/{i}",
            preferences_url=f"https://n.example.org/p?token={i}&x=1",
        )
        for i, name in enumerate(["Jürgen Müller", "Anna Schmidt"])
    ]
    assert rendered[0].message_id != rendered[1].message_id
    raw = rendered[0].data
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    message = email.message_from_bytes(raw, policy=default_policy)
    assert message["Subject"] == "Grüße aus Groß Klein – Ausgabe Dezember"
    assert message["From"].addresses[0].display_name == "Wirtschaftsförderung Rostock"
    assert message["To"].addresses[0].display_name == "Jürgen Müller"
    assert message["To"].addresses[0].addr_spec == "r0@example.org"
    assert message["Message-ID"] == rendered[0].message_id
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Hallo Jürgen Müller (Bäckerei & Söhne)" in text
    assert "Hallo Jürgen Müller (Bäckerei &amp; Söhne)" in html
    assert "Vorschau &lt;b&gt;" in html
    assert "https://n.example.org/p?token=0&amp;x=1" in html
    assert ("Eine sehr lange Zeile. " * 40).strip() in text  # one line, not wrapped
    assert CompanyDetails().register in text


MARKDOWN = """# Netzwerktreffen im Dezember

Hallo {{ name }}, wir laden **{{ organisation }}** herzlich ein.

## Programm

1. Begrüßung im [Stadtteilzentrum](https://stz.example.org/weg)
2. Kurzvorträge
   - Förderprogramme 2027
   - Ausbildung im *Quartier*

> Anmeldung bis Freitag an [uns](mailto:netzwerk@example.org).

## Bis bald, {{ name }}!
"""

READABLE = """Netzwerktreffen im Dezember
===========================

Hallo Jürgen Müller, wir laden Bäckerei Schulz herzlich ein.

Programm
--------

1. Begrüßung im Stadtteilzentrum (https://stz.example.org/weg)
2. Kurzvorträge
   - Förderprogramme 2027
   - Ausbildung im Quartier

> Anmeldung bis Freitag an uns (netzwerk@example.org).

Bis bald, Jürgen Müller!

"""


def test_plain_text_part_is_readable_text_rendered_from_the_markdown() -> None:
    settings = {"sender": "Netzwerk <netzwerk@example.org>", "subject": "Einladung"}
    compiled = compile_campaign(
        campaign_id=uuid.uuid4(), preheader="", body=MARKDOWN, body_format="markdown",
        explicit_text=None, company=CompanyDetails(), **settings,
    )  # fmt: skip
    links = {
        "unsubscribe_url": "https://n.example.org/u/1",
        "preferences_url": "https://n.example.org/p",
    }
    raw = compiled.render(
        key="c.1", email="r@example.org", name="Jürgen Müller", organisation="Bäckerei Schulz",
        token="tok", **links,
    ).data  # fmt: skip
    message = email.message_from_bytes(raw, policy=default_policy)
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert READABLE in text.replace("\r\n", "\n")
    for markup in ("**", "# ", "](", "*Quartier*"):
        assert markup not in text
    assert 'href="https://stz.example.org/weg"' in html and ">Stadtteilzentrum</a>" in html
    assert "<strong>Bäckerei Schulz</strong>" in html


def test_pool_reconnects_a_connection_the_server_dropped_while_idle(
    smtp_sink: SinkHandler,
) -> None:
    from services.newsletter.delivery import Outgoing, SmtpPool
    from shared.mail import SmtpConfig
    from shared.testing import unique_email, wait_until

    config = SmtpConfig.from_url(f"smtp://127.0.0.1:{smtp_sink.port}")  # type: ignore[attr-defined]
    first, second = unique_email(), unique_email()
    with SmtpPool(config, 1) as pool:
        item = Outgoing(1, first, b"Subject: eins\r\n\r\nHallo\r\n.Punkt am Zeilenanfang\r\n")
        pool.send_group("absender@example.org", [item], set)
        assert item.error is None and item.committed
        connection = pool.connections[0]
        assert connection._conn is not None and connection._conn.sock is not None
        connection._conn.sock.close()  # the server went away while the pool was idle
        connection.last_used = 0.0
        again = Outgoing(2, second, b"Subject: zwei\r\n\r\nHallo\r\n")
        pool.send_group("absender@example.org", [again], set)
        assert again.error is None
    received = wait_until(lambda: smtp_sink.to(first))
    assert b"\r\n.Punkt am Zeilenanfang" in received[0].raw  # dot-stuffing undone by the server
    wait_until(lambda: smtp_sink.to(second))
