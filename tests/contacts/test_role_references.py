"""A person's roles name organisations: one that does not exist is the client's error."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient

from .conftest import Maker, suffix

PEOPLE = "/api/v1/people"


def test_a_role_at_an_unknown_organisation_is_422_naming_roles(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    shop = make_org()
    nowhere = str(uuid.uuid4())
    last_name = f"Niemand{suffix()}"
    roles = [
        {"organisation_id": shop["id"], "role": "owner"},
        {"organisation_id": nowhere, "role": "contact_person"},
    ]
    created = contacts_client.post(
        PEOPLE, json={"last_name": last_name, "roles": roles}, headers=coordinator
    )
    assert created.status_code == 422, created.get_json()
    assert created.mimetype == "application/problem+json"
    assert nowhere in created.get_json()["errors"]["roles"][0]
    nobody = contacts_client.get(
        PEOPLE, query_string={"organisation_id": shop["id"]}, headers=coordinator
    )
    assert nobody.get_json()["total"] == 0  # nothing half written

    person = contacts_client.post(
        PEOPLE, json={"last_name": last_name, "roles": roles[:1]}, headers=coordinator
    ).get_json()
    changed = contacts_client.patch(
        f"{PEOPLE}/{person['id']}", json={"roles": roles}, headers=coordinator
    )
    assert changed.status_code == 422, changed.get_json()
    assert nowhere in changed.get_json()["errors"]["roles"][0]
    garbled = contacts_client.patch(
        f"{PEOPLE}/{person['id']}",
        json={"roles": [{"organisation_id": "kein-uuid", "role": "owner"}]},
        headers=coordinator,
    )
    assert garbled.status_code == 422 and "roles" in garbled.get_json()["errors"]
    now = contacts_client.get(f"{PEOPLE}/{person['id']}", headers=coordinator).get_json()
    assert now["version"] == 1
    assert [(r["organisation_id"], r["role"]) for r in now["roles"]] == [(shop["id"], "owner")]
