"""Outreach visits over the staff API: logging, quick-log, timeline, district lists,
follow-ups, roles and bad input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta

from flask import Flask
from flask.testing import FlaskClient

from shared.testing import auth

from .helpers import seed_need, seed_organisation

PROBLEM = "application/problem+json"


def test_log_a_visit_with_topics_and_follow_ups_and_see_it_on_the_timeline(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    org = seed_organisation(visits_app)
    need = seed_need(visits_app)
    token = staff_token("coordinator")
    response = visits_client.post(
        "/api/v1/visits",
        json={
            "organisation_id": org["id"],
            "occurred_at": "2026-03-10T10:30:00",
            "channel": "on_site",
            "topics": [need],
            "summary": "Inhaberin sucht Hilfe bei der Website.",
            "outcome": "Termin mit Go-Digital-Berater vereinbart",
            "referral": "Go-Digital-Berater",
            "follow_ups": [
                {"what": "Beratungstermin nachhalten", "due_on": "2026-03-20"},
                {"what": "Fördermittel prüfen", "assignee": "kollegin@example.org"},
            ],
        },
        headers=auth(token),
    )
    assert response.status_code == 201, response.get_json()
    visit = response.get_json()
    # Naive times are Berlin wall time; answers carry the Berlin offset.
    assert visit["occurred_at"] == "2026-03-10T10:30:00+01:00"
    assert visit["topics"] == [need]
    assert visit["district"] == "Groß Klein"
    assert visit["staff_email"].startswith("coordinator-")
    assignees = sorted(f["assignee"] for f in visit["follow_ups"])
    assert assignees == sorted(["kollegin@example.org", visit["staff_email"]])

    quick = visits_client.post(
        "/api/v1/visits/quick",
        json={"organisation_id": org["id"], "channel": "phone", "note": "Rückruf wegen Fläche"},
        headers=auth(token),
    )
    assert quick.status_code == 201, quick.get_json()
    assert quick.get_json()["summary"] == "Rückruf wegen Fläche"

    timeline = visits_client.get(
        f"/api/v1/organisations/{org['id']}/visits", headers=auth(staff_token("viewer"))
    ).get_json()
    assert timeline["total"] == 2
    # Newest first: the quick log happened now, the full visit in March.
    assert [v["id"] for v in timeline["items"]] == [quick.get_json()["id"], visit["id"]]

    completed = visits_client.patch(
        f"/api/v1/visits/{quick.get_json()['id']}",
        json={"outcome": "Fläche in der Ahrenshooper Straße gezeigt", "topics": [need]},
        headers=auth(token),
    )
    assert completed.status_code == 200
    assert completed.get_json()["topics"] == [need]


def test_unknown_organisation_or_topic_or_channel_is_422(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    org = seed_organisation(visits_app)
    cases = [
        ({"organisation_id": str(uuid.uuid4()), "channel": "phone"}, "organisation_id"),
        ({"organisation_id": org["id"], "channel": "phone", "topics": ["gibt-es-nicht"]}, "topics"),
        ({"organisation_id": org["id"], "channel": "fax"}, "channel"),
        ({"channel": "phone"}, "organisation_id"),
    ]
    for body, field in cases:
        response = visits_client.post("/api/v1/visits", json=body, headers=auth(token))
        assert response.status_code == 422, body
        assert response.mimetype == PROBLEM
        assert field in response.get_json()["errors"], response.get_json()


def test_readers_read_and_writers_write(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    org = seed_organisation(visits_app)
    body = {"organisation_id": org["id"], "channel": "phone", "note": "kurz"}
    assert visits_client.post("/api/v1/visits/quick", json=body).status_code == 401
    viewer = auth(staff_token("viewer"))
    assert visits_client.post("/api/v1/visits/quick", json=body, headers=viewer).status_code == 403
    assert visits_client.get("/api/v1/visits", headers=viewer).status_code == 200


def test_visits_by_district_and_period(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    district = f"Schmarl-{uuid.uuid4().hex[:6]}"
    org = seed_organisation(visits_app, district=district)
    other = seed_organisation(visits_app, district="Groß Klein")
    token = auth(staff_token("coordinator"))
    for org_id, when in [
        (org["id"], "2026-01-31T23:30:00+01:00"),  # still January in Berlin
        (org["id"], "2026-02-01T00:15:00+01:00"),  # February in Berlin, January in UTC
        (org["id"], "2026-03-01T09:00:00"),
        (other["id"], "2026-02-10T09:00:00"),
    ]:
        response = visits_client.post(
            "/api/v1/visits",
            json={"organisation_id": org_id, "channel": "on_site", "occurred_at": when},
            headers=token,
        )
        assert response.status_code == 201
    february = visits_client.get(
        f"/api/v1/visits?district={district}&since=2026-02-01&until=2026-02-28", headers=token
    ).get_json()
    assert february["total"] == 1
    assert february["items"][0]["occurred_at"] == "2026-02-01T00:15:00+01:00"
    everything = visits_client.get(f"/api/v1/visits?district={district}", headers=token)
    assert everything.get_json()["total"] == 3
    bad = visits_client.get("/api/v1/visits?since=2026-02-10&until=2026-02-01", headers=token)
    assert bad.status_code == 422


def test_open_and_overdue_follow_ups_per_assignee(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    org = seed_organisation(visits_app)
    token = auth(staff_token("coordinator"))
    assignee = f"wv-{uuid.uuid4().hex[:8]}@example.org"
    today = date.today()
    visit = visits_client.post(
        "/api/v1/visits",
        json={
            "organisation_id": org["id"],
            "channel": "email",
            "follow_ups": [
                {
                    "what": "überfällig",
                    "due_on": str(today - timedelta(days=3)),
                    "assignee": assignee,
                },
                {
                    "what": "demnächst",
                    "due_on": str(today + timedelta(days=3)),
                    "assignee": assignee,
                },
                {
                    "what": "erledigt",
                    "due_on": str(today - timedelta(days=9)),
                    "assignee": assignee,
                    "done": True,
                },
            ],
        },
        headers=token,
    ).get_json()

    def whats(state: str) -> list[str]:
        response = visits_client.get(
            f"/api/v1/follow-ups?assignee={assignee}&state={state}", headers=token
        )
        assert response.status_code == 200
        return [f["what"] for f in response.get_json()]

    assert whats("open") == ["überfällig", "demnächst"]
    assert whats("overdue") == ["überfällig"]
    assert whats("done") == ["erledigt"]
    load = visits_client.get("/api/v1/follow-ups/by-assignee", headers=token).get_json()
    assert {"assignee": assignee, "open": 2, "overdue": 1} in load

    overdue_id = next(f["id"] for f in visit["follow_ups"] if f["what"] == "überfällig")
    done = visits_client.patch(
        f"/api/v1/follow-ups/{overdue_id}", json={"done": True}, headers=token
    )
    assert done.status_code == 200 and done.get_json()["done_at"]
    assert whats("overdue") == []

    added = visits_client.post(
        f"/api/v1/visits/{visit['id']}/follow-ups", json={"what": "nachfassen"}, headers=token
    )
    assert added.status_code == 201
    assert added.get_json()["assignee"].startswith("coordinator-")


def test_an_archived_organisation_keeps_its_timeline_but_takes_no_new_visits(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    from .helpers import apply, envelope

    org = seed_organisation(visits_app)
    token = auth(staff_token("coordinator"))
    body = {"organisation_id": org["id"], "channel": "on_site", "note": "vor Ort"}
    assert visits_client.post("/api/v1/visits/quick", json=body, headers=token).status_code == 201
    apply(
        visits_app,
        envelope("contacts.organisation.archived", org["id"], 2, {**org, "archived": True}),
    )
    refused = visits_client.post("/api/v1/visits/quick", json=body, headers=token)
    assert refused.status_code == 422 and "organisation_id" in refused.get_json()["errors"]
    timeline = visits_client.get(f"/api/v1/organisations/{org['id']}/visits", headers=token)
    assert timeline.get_json()["total"] == 1
    unknown = visits_client.get(f"/api/v1/organisations/{uuid.uuid4()}/visits", headers=token)
    assert unknown.status_code == 404
