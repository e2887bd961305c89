"""The automated digest: upcoming trainings read over real HTTP from a server that answers
the visits contract (a small app of the test's own: visits' trainings are not on this
branch), sent on the first Monday of the month, skipped when nothing is new, never twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from services.newsletter import digest
from services.newsletter.models import DigestSchedule
from shared.app import get_settings
from shared.db import get_database
from shared.net import free_port
from shared.smtp_sink import SinkHandler
from shared.testing import wait_until

from .conftest import html_of, parse, text_of


def _training(title: str, starts: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "title": title,
        "description": "Praxisnah, mit Beispielen aus dem Stadtteil.",
        "topic": "digitalisierung",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "location_name": "Stadtteilzentrum Groß Klein",
        "location_address": "Gerüstbauerring 28, 18109 Rostock",
        "trainer": "A. Beispiel",
        "capacity": 12,
        "seats_left": 5,
        "signup_deadline": None,
        "signup_url": "https://termine.example.org/t/1",
        "ics_url": "https://termine.example.org/t/1.ics",
    }


@pytest.fixture
def trainings_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    trainings: list[dict[str, Any]] = []
    app = Flask("visits-contract")

    @app.get("/api/v1/public/trainings")
    def public_trainings() -> Any:
        items = sorted(trainings, key=lambda t: t["starts_at"])
        return jsonify(items=items, total=len(items), page=1, per_page=100, pages=1)

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", trainings
    server.shutdown()
    thread.join()


def test_occurrence_is_the_first_monday_at_nine_in_berlin() -> None:
    schedule = DigestSchedule(weekday=0, nth=1, hour=9, minute=0)
    moment = digest.occurrence(schedule, 2026, 12)
    assert moment.isoformat() == "2026-12-07T09:00:00+01:00"
    assert digest.occurrence(schedule, 2026, 6).isoformat() == "2026-06-01T09:00:00+02:00"


def test_composed_digest_names_free_seats_in_german() -> None:
    base = {"title": "Online-Marketing", "starts_at": "2027-03-29T10:00:00+02:00"}
    body = digest.compose(
        [{**base, "seats_left": n, "signup_url": "https://example.org/s"} for n in (3, 1, 0)]
    )
    assert "noch 3 Plätze frei · [Jetzt anmelden](https://example.org/s)" in body
    assert "noch 1 Platz frei" in body
    assert "ausgebucht, Anmeldung auf die Warteliste möglich" in body
    assert "noch 0" not in body
    assert "**Mo., 29.03.2027, 10:00 Uhr**" in body


def test_digest_sent_once_per_month_and_skipped_without_news(
    newsletter_app: Flask,
    newsletter_client: FlaskClient,
    newsletter_worker: Any,
    smtp_sink: SinkHandler,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
    trainings_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, trainings = trainings_server
    list_id = make_list()
    (reader,) = add_subscribers([list_id])
    created = newsletter_client.post(
        "/api/v1/digests",
        json={"name": f"Monatsübersicht {uuid.uuid4().hex[:6]}", "list_ids": [list_id]},
        headers=writer,
    )
    assert created.status_code == 201
    schedule_id = created.get_json()["id"]
    base = get_settings(newsletter_app)
    settings = base.replace(service_urls={**base.service_urls, "visits": url})
    december = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # 9:30 in Berlin, first Monday
    trainings.append(_training("Social Media für Händler", december + timedelta(days=10)))

    def run(now: datetime) -> int:
        with newsletter_app.app_context(), get_database(newsletter_app).session() as session:
            return digest.run_due(session, settings, now)

    assert run(december - timedelta(hours=1)) == 0  # 8:30 Berlin: not yet
    assert run(december) == 1
    assert run(december + timedelta(hours=1)) == 0  # never twice in a period
    mail = parse(wait_until(lambda: smtp_sink.to(reader), timeout=30)[0])
    assert "Social Media für Händler" in text_of(mail)
    assert "Social Media für Händler" in html_of(mail)
    assert "Do., 17.12.2026, 09:30 Uhr" in text_of(mail)

    january = datetime(2027, 1, 4, 8, 5, tzinfo=UTC)
    assert run(january) == 0  # nothing new: skipped
    trainings.append(_training("Fördermittel kompakt", january + timedelta(days=33)))
    february = datetime(2027, 2, 1, 8, 5, tzinfo=UTC)
    assert run(february) == 1
    runs = newsletter_client.get(f"/api/v1/digests/{schedule_id}/runs", headers=writer).get_json()
    assert [(r["period"], r["outcome"]) for r in runs] == [
        ("2026-12", "sent"),
        ("2027-01", "skipped"),
        ("2027-02", "sent"),
    ]
    wait_until(lambda: len(smtp_sink.to(reader)) == 2, timeout=30)
    latest = parse(smtp_sink.to(reader)[1])
    assert "Fördermittel kompakt" in text_of(latest)


def test_run_the_digest_now_over_the_api(
    make_settings: Callable[..., Any],
    newsletter_app: Flask,
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
    trainings_server: tuple[str, list[dict[str, Any]]],
) -> None:
    from services.newsletter.app import create_app

    url, trainings = trainings_server
    trainings.append(_training("Buchhaltung digital", datetime.now(UTC) + timedelta(days=20)))
    base = get_settings(newsletter_app)
    app = create_app(make_settings("newsletter", service_urls={**base.service_urls, "visits": url}))
    client = app.test_client()
    list_id = make_list()
    add_subscribers([list_id])
    try:
        schedule = client.post(
            "/api/v1/digests", json={"name": "Übersicht", "list_ids": [list_id]}, headers=writer
        ).get_json()
        first = client.post(f"/api/v1/digests/{schedule['id']}/run", headers=writer)
        assert first.status_code == 201, first.get_json()
        assert first.get_json()["outcome"] == "sent" and first.get_json()["campaign_id"]
        second = client.post(f"/api/v1/digests/{schedule['id']}/run", headers=writer)
        assert second.status_code == 409
        campaign = client.get(
            f"/api/v1/campaigns/{first.get_json()['campaign_id']}", headers=writer
        ).get_json()
        assert "Buchhaltung digital" in campaign["body"]
        assert campaign["state"] in ("sending", "sent")
    finally:
        get_database(app).dispose()
