"""The .ics of a training, checked as raw text (RFC 5545) and through a parser."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import icalendar
from flask.testing import FlaskClient

from shared.testing import auth

from .helpers import training_body

LONG = (
    "Ein Vormittag für Inhaberinnen und Inhaber kleiner Betriebe in Schmarl und Groß Klein: "
    "Website, Google-Profil, Terminbuchung und Datenschutz – Schritt für Schritt erklärt, "
    "mit Übungen am eigenen Gerät. Bitte bringen Sie Ihr Smartphone oder Notebook mit."
)


def _create(client: FlaskClient, token: str, **overrides: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/trainings",
        json=training_body(description=LONG, **overrides),
        headers=auth(token),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _ics(client: FlaskClient, training_id: str) -> bytes:
    response = client.get(f"/api/v1/public/trainings/{training_id}.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    return response.get_data()


def _property(raw: bytes, name: str) -> str:
    unfolded = raw.replace(b"\r\n ", b"").decode()
    found = re.search(rf"^{name}(?:;[^:\r\n]*)?:(.*)\r$", unfolded, re.MULTILINE)
    assert found, name
    return found.group(1)


def test_raw_ics_follows_rfc_5545(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    training = _create(visits_client, staff_token("coordinator"))
    raw = _ics(visits_client, training["id"])
    assert raw.startswith(b"BEGIN:VCALENDAR\r\n") and raw.endswith(b"END:VCALENDAR\r\n")
    # Every line ends in CRLF: no bare LF anywhere.
    assert raw.count(b"\n") == raw.count(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    assert max(len(line) for line in lines) <= 75, "lines are folded at 75 octets"
    assert any(line.startswith(b" ") for line in lines), "the long description is folded"
    for prop in ("VERSION", "PRODID", "METHOD", "UID", "DTSTAMP", "SEQUENCE", "DTSTART", "DTEND"):
        assert _property(raw, prop)
    assert _property(raw, "VERSION") == "2.0"
    assert _property(raw, "METHOD") == "PUBLISH"
    assert _property(raw, "SEQUENCE") == "0"
    assert b"BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n" in raw
    assert b"DTSTART;TZID=Europe/Berlin:" in raw
    assert re.search(rb"DTSTAMP:\d{8}T\d{6}Z\r\n", raw)
    # Folding splits no multi-byte character: the text decodes and round-trips.
    assert _property(raw, "DESCRIPTION").startswith("Ein Vormittag für Inhaberinnen")


def test_uid_stays_sequence_rises_on_changes_and_cancel_uses_the_same_uid(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    training = _create(visits_client, token)
    url = f"/api/v1/trainings/{training['id']}"
    first = _ics(visits_client, training["id"])
    uid = _property(first, "UID")
    assert uid == _property(_ics(visits_client, training["id"]), "UID")

    visits_client.patch(url, json={"title": "Neuer Titel"}, headers=auth(token))
    assert _property(_ics(visits_client, training["id"]), "SEQUENCE") == "0"
    visits_client.patch(url, json={"location_name": "Ortsamt Nordwest"}, headers=auth(token))
    moved = _ics(visits_client, training["id"])
    assert _property(moved, "SEQUENCE") == "1"
    assert _property(moved, "UID") == uid

    visits_client.patch(url, json={"status": "cancelled"}, headers=auth(token))
    cancelled = _ics(visits_client, training["id"])
    assert _property(cancelled, "METHOD") == "CANCEL"
    assert _property(cancelled, "STATUS") == "CANCELLED"
    assert _property(cancelled, "UID") == uid
    assert _property(cancelled, "SEQUENCE") == "2"


def test_a_parser_finds_the_right_local_time_across_a_dst_change(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    # Berlin switches to summer time on 28 March 2027; both start at 10:00 local time.
    before = _create(
        visits_client, token, starts_at="2027-03-27T10:00:00", ends_at="2027-03-27T12:00:00"
    )
    after = _create(
        visits_client, token, starts_at="2027-03-29T10:00:00", ends_at="2027-03-29T12:00:00"
    )
    results = {}
    for name, training in (("before", before), ("after", after)):
        calendar = icalendar.Calendar.from_ical(_ics(visits_client, training["id"]))
        (event,) = calendar.walk("VEVENT")
        start = event.decoded("dtstart")
        assert (start.hour, start.minute) == (10, 0)
        assert str(start.tzinfo) == "Europe/Berlin"
        results[name] = start.astimezone(UTC)
    assert results["before"] == datetime(2027, 3, 27, 9, 0, tzinfo=UTC)
    assert results["after"] == datetime(2027, 3, 29, 8, 0, tzinfo=UTC)


def test_a_draft_has_no_public_calendar_file(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    draft = _create(visits_client, staff_token("coordinator"), status="draft")
    response = visits_client.get(f"/api/v1/public/trainings/{draft['id']}.ics")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
