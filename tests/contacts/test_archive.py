"""Archive and restore: nothing is deleted, every step is in the history and the events,
and archived records leave lists and search unless asked for."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.contacts.models import OutboxEvent
from shared.db import get_database

from .conftest import Maker, suffix

API = "/api/v1"


def _archive(
    client: FlaskClient, headers: dict[str, str], path: str, archived: bool
) -> dict[str, Any]:
    response = client.post(f"{API}/{path}/archive", json={"archived": archived}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _events(app: Flask, aggregate_id: str) -> list[tuple[str, int, bool]]:
    with get_database(app).session() as session:
        return [
            (event.type, event.version, event.payload["archived"])
            for event in session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id == aggregate_id)
                .order_by(OutboxEvent.id)
            )
        ]


def _history(client: FlaskClient, headers: dict[str, str], path: str) -> list[Any]:
    entries = client.get(f"{API}/{path}/history", headers=headers).get_json()
    return [(entry["action"], entry["before"], entry["after"]) for entry in entries]


def test_restoring_is_in_the_history_and_an_updated_event(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org(name=f"Schuhmacher {suffix()}")
    person = contacts_client.post(
        f"{API}/people", json={"last_name": f"Schuster{suffix()}"}, headers=coordinator
    ).get_json()
    for path, record, entity in (
        (f"organisations/{org['id']}", org, "organisation"),
        (f"people/{person['id']}", person, "person"),
    ):
        assert _archive(contacts_client, coordinator, path, True)["archived"] is True
        restored = _archive(contacts_client, coordinator, path, False)
        assert (restored["archived"], restored["version"]) == (False, 3)
        again = _archive(contacts_client, coordinator, path, False)  # restored already
        assert again["version"] == 3
        assert _history(contacts_client, coordinator, path)[1:] == [
            ("archived", {"archived": False}, {"archived": True}),
            ("restored", {"archived": True}, {"archived": False}),
        ]
        assert _events(contacts_app, record["id"]) == [
            (f"contacts.{entity}.created", 1, False),
            (f"contacts.{entity}.archived", 2, True),
            (f"contacts.{entity}.updated", 3, False),
        ]


def test_archived_premises_leave_the_lists_until_restored(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    owner = make_org(kind="landlord", name=f"Vermieter {suffix()}")
    premises = contacts_client.post(
        f"{API}/premises",
        json={
            "street": "Ahornstraße",
            "floor_area": "60",
            "use": "office",
            "owner_id": owner["id"],
        },
        headers=coordinator,
    ).get_json()
    path = f"premises/{premises['id']}"

    def listed(query: str) -> list[str]:
        body = contacts_client.get(
            f"{API}/premises{query}owner_id={owner['id']}", headers=coordinator
        ).get_json()
        return [item["id"] for item in body["items"]]

    assert listed("?") == listed("/vacant?") == [premises["id"]]
    archived = _archive(contacts_client, coordinator, path, True)
    assert (archived["archived"], archived["version"]) == (True, 2)
    assert listed("?") == listed("/vacant?") == []
    assert listed("?archived=true&") == [premises["id"]]
    assert _history(contacts_client, coordinator, path)[1:] == [
        ("archived", {"archived": False}, {"archived": True})
    ]
    _archive(contacts_client, coordinator, path, False)
    assert listed("?") == [premises["id"]]
    assert listed("?archived=true&") == []
    assert [a for a, _, _ in _history(contacts_client, coordinator, path)] == [
        "created",
        "archived",
        "restored",
    ]


def test_archived_people_leave_search_and_lists_unless_asked_for(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    org = make_org(name=f"Reederei {token}")
    person = contacts_client.post(
        f"{API}/people",
        json={
            "first_name": "Hinrich",
            "last_name": f"Fährmann{token}",
            "roles": [{"organisation_id": org["id"], "role": "owner"}],
        },
        headers=coordinator,
    ).get_json()

    def found(archived: bool = False) -> set[str]:
        query = {"q": f"fahrmann{token}", "archived": str(archived).lower()}
        body = contacts_client.get(f"{API}/search", query_string=query, headers=coordinator)
        return {hit["id"] for hit in body.get_json()["items"] if hit["type"] == "person"}

    def listed(archived: bool = False) -> list[str]:
        query = {"organisation_id": org["id"], "archived": str(archived).lower()}
        body = contacts_client.get(f"{API}/people", query_string=query, headers=coordinator)
        return [item["id"] for item in body.get_json()["items"]]

    assert found() == {person["id"]} and listed() == [person["id"]]
    assert listed(archived=True) == []
    _archive(contacts_client, coordinator, f"people/{person['id']}", True)
    assert found() == set()
    assert found(archived=True) == {person["id"]}
    assert listed() == []
    assert listed(archived=True) == [person["id"]]
