"""Duplicate candidates and the merge that keeps both histories."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.contacts.models import OutboxEvent
from shared.db import get_database

from .conftest import Maker, role, roles_of, suffix


def _pairs(client: FlaskClient, headers: dict[str, str], org_id: str) -> dict[str, list[str]]:
    response = client.get(f"/api/v1/duplicates?organisation_id={org_id}", headers=headers)
    assert response.status_code == 200
    return {
        (pair["second"]["id"] if pair["first"]["id"] == org_id else pair["first"]["id"]): pair[
            "reasons"
        ]
        for pair in response.get_json()
    }


def test_candidates_by_folded_name_and_address_email_and_phone(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    original = make_org(
        name=f"Bäckerei Müller {token} GmbH",
        street="Güstrower Straße",
        house_number="3",
        postcode="18109",
        email=f"info-{token}@example.org",
        phone=f"+49 381 {token[:4].translate(str.maketrans('abcdef', '123456'))}",
    )
    spelled = make_org(
        name=f"Baeckerei Mueller {token}",
        street="Güstrower Str.",
        house_number="3",
        postcode="18109",
    )
    by_email = make_org(name=f"Ganz anders {token}", email=f"INFO-{token}@example.org")
    by_phone = make_org(name=f"Noch anders {token}", phone="0381 " + original["phone"][8:])
    elsewhere = make_org(
        name=f"Bäckerei Müller {token} e.K.",
        street="Warnowallee",
        house_number="1",
        postcode="18107",
    )
    # One record often lacks the postcode, writes "12 a" or "Str" without its dot.
    no_postcode = make_org(
        name=f"Baeckerei Müller {token}", street="Güstrower Str", house_number="3"
    )
    numbered = make_org(name=f"Eisdiele Yılmaz {token}", street="Ahornstraße", house_number="12a")
    spaced = make_org(
        name=f"Eisdiele Yilmaz {token}", street="Ahornstr.", house_number="12 a", postcode="18107"
    )
    pairs = _pairs(contacts_client, coordinator, original["id"])
    assert pairs[spelled["id"]] == ["name"]
    assert pairs[no_postcode["id"]] == ["name"]
    assert _pairs(contacts_client, coordinator, numbered["id"])[spaced["id"]] == ["name"]
    assert pairs[by_email["id"]] == ["email"]
    assert pairs[by_phone["id"]] == ["phone"]
    assert elsewhere["id"] not in pairs


def test_merge_keeps_both_histories_people_and_premises(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
    make_premises: Maker,
) -> None:
    token = suffix()
    keep = make_org(name=f"WIRO {token}", kind="housing_company", tags=["a"], needs=["nachfolge"])
    other = make_org(
        name=f"WIRO Wohnen {token} GmbH",
        kind="housing_company",
        email=f"wiro-{token}@example.org",
        tags=["b"],
        needs=["finanzierung"],
    )
    contacts_client.patch(
        f"/api/v1/organisations/{other['id']}",
        json={"sector": "Wohnungswirtschaft"},
        headers=coordinator,
    )
    person = make_person(
        last_name=f"Krüger{token}",
        roles=[role(other, "property_manager")],
    )
    premises = make_premises(
        street="Kopenhagener Straße",
        floor_area="120",
        use="office",
        owner_id=other["id"],
        district="Groß Klein",
    )

    merged = contacts_client.post(
        f"/api/v1/organisations/{keep['id']}/merge",
        json={"other_id": other["id"]},
        headers=coordinator,
    )
    assert merged.status_code == 200, merged.get_json()
    body: dict[str, Any] = merged.get_json()
    assert body["email"] == f"wiro-{token}@example.org"
    assert body["sector"] == "Wohnungswirtschaft"
    assert body["tags"] == ["a", "b"]
    assert body["needs"] == ["finanzierung", "nachfolge"]
    assert [p["person_id"] for p in body["people"]] == [person["id"]]
    moved = contacts_client.get(
        f"/api/v1/premises/{premises['id']}", headers=coordinator
    ).get_json()
    assert moved["owner_id"] == keep["id"]
    gone = contacts_client.get(
        f"/api/v1/organisations/{other['id']}", headers=coordinator
    ).get_json()
    assert gone["archived"] is True

    history = contacts_client.get(
        f"/api/v1/organisations/{keep['id']}/history", headers=coordinator
    ).get_json()
    entries = [(h["entity_id"], h["action"]) for h in history]
    assert (other["id"], "created") in entries
    assert (other["id"], "updated") in entries  # the sector, set before the merge
    assert (keep["id"], "merged") in entries
    assert (other["id"], "merged_into") in entries

    with get_database(contacts_app).session() as session:
        types = list(
            session.scalars(
                select(OutboxEvent.type)
                .where(OutboxEvent.aggregate_id == other["id"])
                .order_by(OutboxEvent.id)
            )
        )
    assert types[-1] == "contacts.organisation.archived"

    again = contacts_client.post(
        f"/api/v1/organisations/{keep['id']}/merge",
        json={"other_id": other["id"]},
        headers=coordinator,
    )
    assert again.status_code == 422 and "other_id" in again.get_json()["errors"]
    itself = contacts_client.post(
        f"/api/v1/organisations/{keep['id']}/merge",
        json={"other_id": keep["id"]},
        headers=coordinator,
    )
    assert itself.status_code == 422


def _events(app: Flask, aggregate_id: str) -> list[tuple[str, int, dict[str, Any]]]:
    with get_database(app).session() as session:
        return [
            (row.type, row.version, row.payload)
            for row in session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id == aggregate_id)
                .order_by(OutboxEvent.id)
            )
        ]


def test_merge_moves_people_and_premises_as_their_own_changes(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
    make_premises: Maker,
) -> None:
    token = suffix()
    keep = make_org(name=f"Hausverwaltung Ost {token}", kind="landlord")
    other = make_org(name=f"Hausverwaltung Ost {token} GmbH", kind="landlord")
    elsewhere = make_org(name=f"Anderswo {token}")
    person = make_person(
        last_name=f"Peters{token}",
        roles=[
            role(other, "property_manager"),
            role(elsewhere, "owner"),
        ],
    )
    premises = make_premises(
        street="Ahornstraße",
        floor_area="60",
        use="office",
        owner_id=other["id"],
    )

    merged = contacts_client.post(
        f"/api/v1/organisations/{keep['id']}/merge",
        json={"other_id": other["id"]},
        headers=coordinator,
    )
    assert merged.status_code == 200, merged.get_json()

    # The person's change is what a PATCH of their roles writes: version, history, event.
    now = contacts_client.get(f"/api/v1/people/{person['id']}", headers=coordinator).get_json()
    assert now["version"] == 2
    assert roles_of(now) == sorted([(keep["id"], "property_manager"), (elsewhere["id"], "owner")])
    events = _events(contacts_app, person["id"])
    assert [(type_, version) for type_, version, _ in events] == [
        ("contacts.person.created", 1),
        ("contacts.person.updated", 2),
    ]
    assert events[-1][2]["organisation_ids"] == sorted([keep["id"], elsewhere["id"]])
    history = contacts_client.get(
        f"/api/v1/people/{person['id']}/history", headers=coordinator
    ).get_json()
    assert [h["action"] for h in history] == ["created", "updated"]
    assert {r["organisation_id"] for r in history[-1]["after"]["roles"]} == {
        keep["id"],
        elsewhere["id"],
    }
    moved = contacts_client.get(
        f"/api/v1/premises/{premises['id']}", headers=coordinator
    ).get_json()
    assert (moved["owner_id"], moved["version"]) == (keep["id"], 2)
    premises_history = contacts_client.get(
        f"/api/v1/premises/{premises['id']}/history", headers=coordinator
    ).get_json()
    assert premises_history[-1]["after"] == {"owner_id": keep["id"]}
    # The kept organisation's search finds the person moved to it.
    found = contacts_client.get(f"/api/v1/search?q=peters{token}", headers=coordinator)
    assert keep["id"] in {hit["id"] for hit in found.get_json()["items"]}


def test_merge_into_a_business_of_a_landlord_owning_premises_is_refused(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_premises: Maker
) -> None:
    token = suffix()
    business = make_org(name=f"Krause {token}", kind="business")
    landlord = make_org(name=f"Krause {token} Immobilien", kind="landlord")
    premises = make_premises(
        street="Eschenstraße",
        floor_area="45",
        use="retail",
        owner_id=landlord["id"],
    )

    refused = contacts_client.post(
        f"/api/v1/organisations/{business['id']}/merge",
        json={"other_id": landlord["id"]},
        headers=coordinator,
    )
    assert refused.status_code == 409
    assert "premises" in refused.get_json()["detail"]
    assert refused.get_json()["code"] == "owner_kind"
    unchanged = contacts_client.get(
        f"/api/v1/organisations/{landlord['id']}", headers=coordinator
    ).get_json()
    assert (unchanged["archived"], unchanged["version"]) == (False, 1)
    owner = contacts_client.get(f"/api/v1/premises/{premises['id']}", headers=coordinator)
    assert owner.get_json()["owner_id"] == landlord["id"]

    # Nor can the landlord become a business while it owns premises.
    kind = contacts_client.patch(
        f"/api/v1/organisations/{landlord['id']}", json={"kind": "business"}, headers=coordinator
    )
    assert kind.status_code == 409 and kind.get_json()["code"] == "owner_kind"
    housing = contacts_client.patch(
        f"/api/v1/organisations/{landlord['id']}",
        json={"kind": "housing_company"},
        headers=coordinator,
    )
    assert housing.status_code == 200

    # The other way round keeps the owner's kind: allowed.
    kept = contacts_client.post(
        f"/api/v1/organisations/{landlord['id']}/merge",
        json={"other_id": business["id"]},
        headers=coordinator,
    )
    assert kept.status_code == 200, kept.get_json()
    assert kept.get_json()["kind"] == "housing_company"

    # The business is archived now: nothing can be merged into it.
    into_archived = contacts_client.post(
        f"/api/v1/organisations/{business['id']}/merge",
        json={"other_id": make_org(name=f"Dritte {token}")["id"]},
        headers=coordinator,
    )
    assert into_archived.status_code == 409
