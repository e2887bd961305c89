"""Duplicates and merge: the candidates' rules, and what a merge does with notes, tenants,
roles held at both, and the history of organisations merged before."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from .conftest import Maker, role, roles_of, suffix
from .test_duplicates import _pairs

ORGS = "/api/v1/organisations"


def _merge(
    client: FlaskClient, headers: dict[str, str], keep: dict[str, Any], other: dict[str, Any]
) -> dict[str, Any]:
    response = client.post(
        f"{ORGS}/{keep['id']}/merge", json={"other_id": other["id"]}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _get(client: FlaskClient, headers: dict[str, str], path: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/{path}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_merge_joins_the_notes_of_both(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    keep = make_org(name=f"Tischlerei {token}", notes="Kernzeit 8–16 Uhr")
    other = make_org(name=f"Tischlerei {token} GmbH", notes="Schlüssel beim Hausmeister")
    merged = _merge(contacts_client, coordinator, keep, other)
    assert merged["notes"] == "Kernzeit 8–16 Uhr\n\nSchlüssel beim Hausmeister"

    # Notes the kept one has already are not written twice; empty notes are filled.
    repeated = make_org(name=f"Tischlerei {token} e.K.", notes="Schlüssel beim Hausmeister")
    assert _merge(contacts_client, coordinator, keep, repeated)["notes"] == merged["notes"]
    empty = make_org(name=f"Polsterei {token}")
    noted = make_org(name=f"Polsterei {token} GmbH", notes="Nur vormittags")
    assert _merge(contacts_client, coordinator, empty, noted)["notes"] == "Nur vormittags"


def test_merge_moves_premises_the_other_rents(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_premises: Maker
) -> None:
    token = suffix()
    landlord = make_org(name=f"Vermietung {token}", kind="landlord")
    keep = make_org(name=f"Blumen Weiß {token}")
    other = make_org(name=f"Blumenhaus Weiß {token}")
    premises = make_premises(
        street="Kolumbusring",
        floor_area="45",
        use="retail",
        owner_id=landlord["id"],
        status="let",
        tenant_id=other["id"],
    )

    _merge(contacts_client, coordinator, keep, other)
    moved = _get(contacts_client, coordinator, f"premises/{premises['id']}")
    assert (moved["tenant_id"], moved["owner_id"], moved["version"]) == (
        keep["id"],
        landlord["id"],
        2,
    )
    history = contacts_client.get(
        f"/api/v1/premises/{premises['id']}/history", headers=coordinator
    ).get_json()
    assert history[-1]["after"] == {"tenant_id": keep["id"]}


def test_a_role_held_at_both_is_held_once_after_the_merge(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_person: Maker
) -> None:
    token = suffix()
    keep = make_org(name=f"Autohaus {token}")
    other = make_org(name=f"Autohaus {token} GmbH")
    person = make_person(
        first_name="Uwe",
        last_name=f"Lange{token}",
        roles=[role(keep, "contact_person"), role(other, "contact_person"), role(other, "owner")],
    )

    merged = _merge(contacts_client, coordinator, keep, other)
    assert sorted((p["person_id"], p["role"]) for p in merged["people"]) == [
        (person["id"], "contact_person"),
        (person["id"], "owner"),
    ]
    now = _get(contacts_client, coordinator, f"people/{person['id']}")
    assert roles_of(now) == [
        (keep["id"], "contact_person"),
        (keep["id"], "owner"),
    ]
    assert now["version"] == 2


def test_history_follows_merges_made_one_after_another(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    first = make_org(name=f"Werft {token}")
    second = make_org(name=f"Werft {token} GmbH")
    third = make_org(name=f"Werft {token} KG")
    contacts_client.patch(
        f"{ORGS}/{second['id']}", json={"sector": "Schiffbau"}, headers=coordinator
    )
    _merge(contacts_client, coordinator, first, second)  # first <- second
    _merge(contacts_client, coordinator, third, first)  # third <- first (<- second)

    response = contacts_client.get(f"{ORGS}/{third['id']}/history", headers=coordinator)
    entries = [(h["entity_id"], h["action"]) for h in response.get_json()]
    for entry in [
        (second["id"], "created"),
        (second["id"], "updated"),
        (second["id"], "merged_into"),
        (first["id"], "created"),
        (first["id"], "merged"),
        (first["id"], "merged_into"),
        (third["id"], "created"),
        (third["id"], "merged"),
    ]:
        assert entry in entries, entry
    assert [h["id"] for h in response.get_json()] == sorted(h["id"] for h in response.get_json())


def test_candidates_leave_out_archived_organisations(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    email = f"info-{token}@example.org"
    live = make_org(name=f"Imbiss {token}", email=email)
    archived = make_org(name=f"Grill {token}", email=email)
    assert _pairs(contacts_client, coordinator, live["id"]) == {archived["id"]: ["email"]}
    contacts_client.post(
        f"{ORGS}/{archived['id']}/archive", json={"archived": True}, headers=coordinator
    )
    assert _pairs(contacts_client, coordinator, live["id"]) == {}
    assert _pairs(contacts_client, coordinator, archived["id"]) == {}


def test_the_same_name_pairs_when_one_has_no_address(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    address = {"street": "Warnowallee", "house_number": "20b", "postcode": "18107"}
    # The pair's order is by id: the one without an address first in one pair, second in
    # the other.
    for name, addressed_is_first in ((f"Eisdiele {token}", True), (f"Café {token}", False)):
        one, two = sorted(
            (make_org(name=name), make_org(name=f"{name} GmbH")), key=lambda o: uuid.UUID(o["id"])
        )
        addressed, bare = (one, two) if addressed_is_first else (two, one)
        contacts_client.patch(f"{ORGS}/{addressed['id']}", json=address, headers=coordinator)
        assert _pairs(contacts_client, coordinator, bare["id"]) == {addressed["id"]: ["name"]}
    # Both with addresses, and they differ: not the same.
    here = make_org(name=f"Kiosk {token}", **address)
    there = make_org(name=f"Kiosk {token}", street="Kolumbusring", postcode="18106")
    assert there["id"] not in _pairs(contacts_client, coordinator, here["id"])
