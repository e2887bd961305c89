"""Duplicate candidates and the merge that keeps both histories."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.contacts.models import OutboxEvent
from shared.db import get_database

from .conftest import Maker, suffix


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
    pairs = _pairs(contacts_client, coordinator, original["id"])
    assert pairs[spelled["id"]] == ["name"]
    assert pairs[by_email["id"]] == ["email"]
    assert pairs[by_phone["id"]] == ["phone"]
    assert elsewhere["id"] not in pairs


def test_merge_keeps_both_histories_people_and_premises(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
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
    person = contacts_client.post(
        "/api/v1/people",
        json={
            "last_name": f"Krüger{token}",
            "roles": [{"organisation_id": other["id"], "role": "property_manager"}],
        },
        headers=coordinator,
    ).get_json()
    premises = contacts_client.post(
        "/api/v1/premises",
        json={
            "street": "Kopenhagener Straße",
            "floor_area": "120",
            "use": "office",
            "owner_id": other["id"],
            "district": "Groß Klein",
        },
        headers=coordinator,
    ).get_json()

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
