"""The mailer against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import smtplib
from email.policy import default as default_policy

import pytest

from shared.mail import Mailer, SmtpConfig, address, build_message
from shared.smtp_sink import SinkHandler, start_sink
from shared.testing import unique_email, wait_until


def _message(
    to: str, subject: str = "Einladung: Gründerstammtisch in Groß Klein"
) -> email.message.EmailMessage:
    return build_message(
        sender="Büro für Wirtschaft <buero@example.org>",
        to=address(to, "Jürgen Müller-Lüdenscheidt"),
        subject=subject,
        text="Grüße aus Schmarl – die Straße ist frei.",
        html="<p>Grüße aus <b>Schmarl</b> – die Straße ist frei.</p>",
        attachments=[
            ("termin.ics", "text/calendar; method=REQUEST", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
        ],
    )


def test_message_headers_are_ascii_and_decode_to_the_german_text() -> None:
    msg = _message("j.mueller@example.org")
    raw = msg.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # no raw 8-bit in headers
    assert b"=?utf-8?" in head.lower()
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed["Subject"] == "Einladung: Gründerstammtisch in Groß Klein"
    assert parsed["To"].addresses[0].display_name == "Jürgen Müller-Lüdenscheidt"
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed["Date"]
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and "Grüße aus Schmarl" in body.get_content()
    alternative = next(
        part for part in parsed.walk() if part.get_content_type() == "multipart/alternative"
    )
    kinds = [part.get_content_type() for part in alternative.iter_parts()]
    assert kinds == ["text/plain", "text/html"]  # text first
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "termin.ics"
    assert attachment.get_param("method") == "REQUEST"


@pytest.mark.parametrize(
    "bad",
    ["Hallo\r\nBcc: victim@example.org", "Hallo\nX-Injected: 1"],
)
def test_line_breaks_in_headers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        _message("a@example.org", subject=bad)
    with pytest.raises(ValueError, match="line breaks"):
        address("a@example.org", bad)


def test_mailer_sends_over_one_reused_connection_and_recovers(smtp_sink: SinkHandler) -> None:
    config = SmtpConfig.from_url(f"smtp://127.0.0.1:{smtp_sink.port}")  # type: ignore[attr-defined]
    first, second, third = unique_email(), unique_email(), unique_email()
    with Mailer(config) as mailer:
        mailer.send(_message(first))
        connection = mailer._conn
        mailer.send(_message(second))
        assert mailer._conn is connection
        # The server drops the idle connection; the next send reconnects by itself.
        assert connection is not None
        connection.sock.close()  # type: ignore[union-attr]
        mailer.send(_message(third))
    for recipient in (first, second, third):
        wait_until(lambda r=recipient: smtp_sink.to(r))


def test_refusal_from_the_server_reaches_the_caller(tmp_path) -> None:
    controller, handler = start_sink(
        folder=tmp_path,
        responder=lambda _s, rcpts, _raw: "550 5.1.1 no such user" if "gone" in rcpts[0] else None,
    )
    try:
        with Mailer(SmtpConfig(host="127.0.0.1", port=controller.port)) as mailer:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                mailer.send(_message("gone@example.org"))
            assert refused.value.smtp_code == 550
            mailer.send(_message("here@example.org"))  # the connection is still usable
        assert [m.recipients for m in handler.messages] == [["here@example.org"]]
    finally:
        controller.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpConfig(host="mail.example.org", port=25)),
        (
            "smtp://user%40x:p%3Ass@mail.example.org?tls=starttls",
            SmtpConfig(
                host="mail.example.org",
                port=587,
                username="user@x",
                password="p:ss",
                security="starttls",
            ),
        ),
        ("smtps://mail.example.org", SmtpConfig(host="mail.example.org", port=465, security="ssl")),
    ],
)
def test_smtp_urls(url: str, expected: SmtpConfig) -> None:
    assert SmtpConfig.from_url(url) == expected


def test_bad_smtp_url_is_refused() -> None:
    with pytest.raises(ValueError, match="smtp"):
        SmtpConfig.from_url("http://mail.example.org")


@pytest.mark.parametrize("breaking", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_every_kind_of_line_break_is_refused_in_headers(breaking: str) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        _message("a@example.org", subject=f"Hallo{breaking}Welt")
    with pytest.raises(ValueError, match="line breaks"):
        address("a@example.org", f"Eve{breaking}Mallory")


@pytest.mark.parametrize("signal", ["worker_process_shutdown", "worker_shutdown"])
def test_a_worker_that_ends_drops_its_connections(smtp_sink: SinkHandler, signal: str) -> None:
    """Per-process mailers are released when the worker process (or the worker) ends."""
    from celery import signals

    from shared.celery_app import at_worker_exit

    config = SmtpConfig.from_url(f"smtp://127.0.0.1:{smtp_sink.port}")  # type: ignore[attr-defined]
    mailer = Mailer(config)
    mailer.send(_message(unique_email()))
    connection = mailer._conn
    assert connection is not None and connection.sock is not None
    at_worker_exit(mailer.drop)
    getattr(signals, signal).send(sender=None)
    assert mailer._conn is None and connection.sock is None
