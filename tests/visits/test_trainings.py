"""Trainings (staff) and the public list."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from services.visits.services import BERLIN
from shared.testing import auth

from .helpers import training_body

PROBLEM = "application/problem+json"


def _create(client: FlaskClient, token: str, **overrides: object) -> dict:
    response = client.post(
        "/api/v1/trainings", json=training_body(**overrides), headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_training_times_are_berlin_in_and_out_and_stored_as_instants(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    # Naive = Berlin wall time; in summer Berlin is UTC+2.
    summer = _create(
        visits_client, token, starts_at="2027-07-01T18:00:00", ends_at="2027-07-01T20:00:00"
    )
    assert summer["starts_at"] == "2027-07-01T18:00:00+02:00"
    # With an offset, the instant is kept and shown in Berlin time.
    winter = _create(
        visits_client,
        token,
        starts_at="2027-01-15T09:00:00Z",
        ends_at="2027-01-15T11:00:00+00:00",
        signup_deadline="2027-01-14T12:00:00",
    )
    assert winter["starts_at"] == "2027-01-15T10:00:00+01:00"
    assert winter["signup_deadline"] == "2027-01-14T12:00:00+01:00"
    assert winter["seats_left"] == 2 and winter["sequence"] == 0


def test_bad_training_input_is_422_and_bad_transitions_are_409(
    visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    body = training_body(ends_at="2020-01-01T00:00:00")
    response = visits_client.post("/api/v1/trainings", json=body, headers=auth(token))
    assert response.status_code == 422 and "ends_at" in response.get_json()["errors"]
    missing = visits_client.post("/api/v1/trainings", json={"title": "x"}, headers=auth(token))
    assert missing.status_code == 422
    assert {"starts_at", "ends_at", "capacity"} <= set(missing.get_json()["errors"])
    negative = visits_client.post(
        "/api/v1/trainings", json=training_body(capacity=-1), headers=auth(token)
    )
    assert negative.status_code == 422
    # A year mistyped ("0224") or at the edge of what a date can hold is a 422 naming the
    # field, never a time Berlin's offsets cannot write, nor an overflow.
    for field, value in (
        ("starts_at", "0224-05-01T10:00:00"),
        ("starts_at", "0001-01-01T00:30:00+05:00"),
        ("ends_at", "9999-12-31T23:59:59-05:00"),
        ("signup_deadline", "2100-01-01T00:00:00"),
    ):
        odd = visits_client.post(
            "/api/v1/trainings", json=training_body(**{field: value}), headers=auth(token)
        )
        assert odd.status_code == 422, (field, value, odd.status_code)
        assert odd.get_json()["errors"] == {field: ["Must be in the years 2000 to 2099."]}

    training = _create(visits_client, token, status="draft")
    url = f"/api/v1/trainings/{training['id']}"
    assert visits_client.patch(url, json={"status": "done"}, headers=auth(token)).status_code == 409
    assert (
        visits_client.patch(url, json={"status": "published"}, headers=auth(token)).status_code
        == 200
    )
    cancelled = visits_client.patch(url, json={"status": "cancelled"}, headers=auth(token))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    again = visits_client.patch(url, json={"title": "Neu"}, headers=auth(token))
    assert again.status_code == 409 and again.mimetype == PROBLEM
    viewer = auth(staff_token("viewer"))
    assert visits_client.patch(url, json={"title": "x"}, headers=viewer).status_code == 403
    assert visits_client.get(url, headers=viewer).status_code == 200


def test_public_list_shows_published_upcoming_trainings_soonest_first(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    token = staff_token("coordinator")
    now = datetime.now(BERLIN).replace(microsecond=0)
    later = _create(
        visits_client,
        token,
        starts_at=(now + timedelta(days=400)).isoformat(),
        ends_at=(now + timedelta(days=400, hours=2)).isoformat(),
    )
    sooner = _create(
        visits_client,
        token,
        starts_at=(now + timedelta(days=399)).isoformat(),
        ends_at=(now + timedelta(days=399, hours=2)).isoformat(),
    )
    draft = _create(visits_client, token, status="draft")
    response = visits_client.get("/api/v1/public/trainings?per_page=500")
    assert response.status_code == 200
    page = response.get_json()
    ids = [item["id"] for item in page["items"]]
    assert draft["id"] not in ids
    assert ids.index(sooner["id"]) < ids.index(later["id"])
    starts = [item["starts_at"] for item in page["items"]]
    assert starts == sorted(starts, key=datetime.fromisoformat)
    item = next(i for i in page["items"] if i["id"] == later["id"])
    assert set(item) >= {
        "id",
        "title",
        "description",
        "topic",
        "starts_at",
        "ends_at",
        "location_name",
        "location_address",
        "trainer",
        "capacity",
        "seats_left",
        "signup_deadline",
        "signup_url",
        "ics_url",
    }
    assert item["seats_left"] == 2
    assert item["signup_url"].endswith(f"/api/v1/public/trainings/{later['id']}/signup")
    assert item["ics_url"].endswith(f"/api/v1/public/trainings/{later['id']}.ics")
    assert datetime.fromisoformat(item["starts_at"]).utcoffset() is not None
    assert visits_client.get(f"/api/v1/public/trainings/{draft['id']}").status_code == 404
    assert visits_client.get(f"/api/v1/public/trainings/{uuid.uuid4()}").status_code == 404
