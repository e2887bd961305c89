"""Organisations, people, premises, vocabularies and history over the API, on the real
database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.contacts.models import OutboxEvent
from shared.db import get_database

from .conftest import Maker, suffix

ORGS = "/api/v1/organisations"


def _events(app: Flask, aggregate_id: str) -> list[OutboxEvent]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id == aggregate_id)
                .order_by(OutboxEvent.id)
            )
        )


def test_create_read_update_archive_organisation_with_events(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    name = f"Bäckerei Müller {suffix()}"
    created = contacts_client.post(
        ORGS,
        json={
            "kind": "business",
            "name": name,
            "legal_form": "GmbH",
            "sector": "Lebensmittelhandwerk",
            "wz_code": "10.71",
            "street": "Güstrower Straße",
            "house_number": "12a",
            "postcode": "18109",
            "city": "Rostock",
            "district": "Groß Klein",
            "website": "https://baeckerei-mueller.example",
            "email": "Info@Baeckerei-Mueller.example",
            "phone": "+49 381 123456",
            "employees": 7,
            "status": "active",
            "needs": ["digitalisierung", "fachkraefte"],
            "tags": ["Handwerk", "Frühstück"],
            "notes": "<b>nicht</b> vor 10 Uhr anrufen",
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.get_json()
    org = created.get_json()
    assert org["name"] == name
    assert org["district"] == "Groß Klein"
    assert org["email"] == "info@baeckerei-mueller.example"
    assert org["needs"] == ["digitalisierung", "fachkraefte"]
    assert org["notes"] == "<b>nicht</b> vor 10 Uhr anrufen"  # stored as given
    assert org["version"] == 1
    assert org["created_at"].endswith(("+01:00", "+02:00"))  # shown in Europe/Berlin

    read = contacts_client.get(f"{ORGS}/{org['id']}", headers=coordinator)
    assert read.get_json()["street"] == "Güstrower Straße"

    updated = contacts_client.patch(
        f"{ORGS}/{org['id']}", json={"status": "closed", "version": 1}, headers=coordinator
    )
    assert updated.status_code == 200
    assert updated.get_json()["status"] == "closed"
    assert updated.get_json()["version"] == 2

    stale = contacts_client.patch(
        f"{ORGS}/{org['id']}", json={"status": "active", "version": 1}, headers=coordinator
    )
    assert stale.status_code == 409

    archived = contacts_client.post(
        f"{ORGS}/{org['id']}/archive", json={"archived": True}, headers=coordinator
    )
    assert archived.get_json()["archived"] is True

    events = _events(contacts_app, org["id"])
    assert [e.type for e in events] == [
        "contacts.organisation.created",
        "contacts.organisation.updated",
        "contacts.organisation.archived",
    ]
    assert [e.version for e in events] == [1, 2, 3]
    data = events[0].payload
    assert data == {
        "id": org["id"],
        "name": name,
        "kind": "business",
        "status": "active",
        "district": "Groß Klein",
        "street": "Güstrower Straße",
        "house_number": "12a",
        "postcode": "18109",
        "city": "Rostock",
        "email": "info@baeckerei-mueller.example",
        "phone": "+49 381 123456",
        "needs": ["digitalisierung", "fachkraefte"],
        "tags": ["Handwerk", "Frühstück"],
        "archived": False,
    }
    assert events[2].payload["archived"] is True


def test_history_shows_who_changed_what(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org(street="Am Markt", city="Rostock")
    contacts_client.patch(
        f"{ORGS}/{org['id']}",
        json={"street": "Schmarler Damm", "tags": ["neu"]},
        headers=coordinator,
    )
    contacts_client.patch(f"{ORGS}/{org['id']}", json={"tags": ["neu"]}, headers=coordinator)
    history = contacts_client.get(f"{ORGS}/{org['id']}/history", headers=coordinator).get_json()
    assert [entry["action"] for entry in history] == ["created", "updated"]
    update = history[1]
    assert update["actor"].startswith("coordinator-")
    assert update["changed"] == ["street", "tags"]
    assert update["before"] == {"street": "Am Markt", "tags": []}
    assert update["after"] == {"street": "Schmarler Damm", "tags": ["neu"]}
    assert (
        contacts_client.get(f"{ORGS}/{uuid.uuid4()}/history", headers=coordinator).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-address"),
        ("website", "nur text"),
        ("postcode", "1810"),
        ("postcode", "18a09"),
        ("kind", "shop"),
        ("status", "open"),
        ("name", ""),
        ("name", "   "),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    contacts_client: FlaskClient, coordinator: dict[str, str], field: str, value: str
) -> None:
    body: dict[str, Any] = {"kind": "business", "name": "Gut", field: value}
    response = contacts_client.post(ORGS, json=body, headers=coordinator)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]


def test_unknown_district_and_need_are_422(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    response = contacts_client.post(
        ORGS, json={"kind": "business", "name": "X", "district": "Atlantis"}, headers=coordinator
    )
    assert response.status_code == 422 and "district" in response.get_json()["errors"]
    response = contacts_client.post(
        ORGS, json={"kind": "business", "name": "X", "needs": ["zauberei"]}, headers=coordinator
    )
    assert response.status_code == 422 and "needs" in response.get_json()["errors"]


def test_roles_are_enforced(
    contacts_client: FlaskClient,
    viewer: dict[str, str],
    coordinator: dict[str, str],
    make_org: Maker,
) -> None:
    org = make_org()
    assert contacts_client.get(f"{ORGS}/{org['id']}", headers=viewer).status_code == 200
    assert (
        contacts_client.post(
            ORGS, json={"kind": "business", "name": "X"}, headers=viewer
        ).status_code
        == 403
    )
    assert contacts_client.get(ORGS).status_code == 401
    assert (
        contacts_client.post(
            "/api/v1/needs", json={"label": "Zauber"}, headers=coordinator
        ).status_code
        == 403
    )


def test_list_filters_sorting_and_pagination(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"t{suffix()}"
    make_org(name="Zander", kind="landlord", district="Schmarl", tags=[tag], status="active")
    make_org(name="Anker", kind="business", district="Schmarl", tags=[tag], needs=["nachfolge"])
    make_org(name="Mitte", kind="business", district="Groß Klein", tags=[tag, "x"])
    archived = make_org(name="Alt", tags=[tag])
    contacts_client.post(
        f"{ORGS}/{archived['id']}/archive", json={"archived": True}, headers=coordinator
    )

    def names(query: str) -> tuple[list[str], int]:
        body = contacts_client.get(f"{ORGS}?tags={tag}&{query}", headers=coordinator).get_json()
        return [item["name"] for item in body["items"]], body["total"]

    assert names("") == (["Anker", "Mitte", "Zander"], 3)
    assert names("sort=-name") == (["Zander", "Mitte", "Anker"], 3)
    assert names("district=Schmarl") == (["Anker", "Zander"], 2)
    assert names("kind=landlord") == (["Zander"], 1)
    assert names("status=active") == (["Zander"], 1)
    assert names("needs=nachfolge") == (["Anker"], 1)
    assert names("tags=x") == (["Mitte"], 1)
    assert names("archived=true") == (["Alt"], 1)
    page = contacts_client.get(
        f"{ORGS}?tags={tag}&per_page=2&page=2", headers=coordinator
    ).get_json()
    assert [i["name"] for i in page["items"]] == ["Zander"]
    assert (page["total"], page["pages"], page["page"]) == (3, 2, 2)
    bad = contacts_client.get(f"{ORGS}?sort=colour", headers=coordinator)
    assert bad.status_code == 422 and "sort" in bad.get_json()["errors"]
    assert contacts_client.get(f"{ORGS}?kind=shop", headers=coordinator).status_code == 422


def test_people_with_roles_at_several_organisations(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    shop, landlord = make_org(), make_org(kind="landlord")
    created = contacts_client.post(
        "/api/v1/people",
        json={
            "first_name": "Jürgen",
            "last_name": "Möller",
            "email": "j.moeller@example.org",
            "roles": [
                {"organisation_id": shop["id"], "role": "owner"},
                {"organisation_id": landlord["id"], "role": "property_manager"},
            ],
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.get_json()
    person = created.get_json()
    assert {(r["organisation_name"], r["role"]) for r in person["roles"]} == {
        (shop["name"], "owner"),
        (landlord["name"], "property_manager"),
    }
    org = contacts_client.get(f"{ORGS}/{shop['id']}", headers=coordinator).get_json()
    assert [(p["person_name"], p["role"]) for p in org["people"]] == [("Jürgen Möller", "owner")]
    listed = contacts_client.get(
        f"/api/v1/people?organisation_id={landlord['id']}", headers=coordinator
    ).get_json()
    assert [p["last_name"] for p in listed["items"]] == ["Möller"]

    changed = contacts_client.patch(
        f"/api/v1/people/{person['id']}",
        json={"roles": [{"organisation_id": shop["id"], "role": "managing_director"}]},
        headers=coordinator,
    )
    assert [r["role"] for r in changed.get_json()["roles"]] == ["managing_director"]
    contacts_client.post(
        f"/api/v1/people/{person['id']}/archive", json={"archived": True}, headers=coordinator
    )
    events = _events(contacts_app, person["id"])
    assert [e.type for e in events] == [
        "contacts.person.created",
        "contacts.person.updated",
        "contacts.person.archived",
    ]
    assert sorted(events[0].payload["organisation_ids"]) == sorted([shop["id"], landlord["id"]])
    assert events[1].payload["organisation_ids"] == [shop["id"]]
    history = contacts_client.get(f"/api/v1/people/{person['id']}/history", headers=coordinator)
    assert [h["action"] for h in history.get_json()] == ["created", "updated", "archived"]

    nameless = contacts_client.post("/api/v1/people", json={"first_name": " "}, headers=coordinator)
    assert nameless.status_code == 422 and "last_name" in nameless.get_json()["errors"]
    bad_role = contacts_client.post(
        "/api/v1/people",
        json={"last_name": "X", "roles": [{"organisation_id": shop["id"], "role": "king"}]},
        headers=coordinator,
    )
    assert bad_role.status_code == 422 and "roles" in bad_role.get_json()["errors"]


def test_a_role_given_in_a_patch_is_checked_whole(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    shop = make_org()
    person = contacts_client.post(
        "/api/v1/people", json={"first_name": "Ida", "last_name": "Ihde"}, headers=coordinator
    ).get_json()
    for roles, missing in (
        ([{"organisation_id": shop["id"]}], "role"),
        ([{"role": "owner"}], "organisation_id"),
    ):
        response = contacts_client.patch(
            f"/api/v1/people/{person['id']}", json={"roles": roles}, headers=coordinator
        )
        assert response.status_code == 422, response.get_json()
        errors = response.get_json()["errors"]
        assert errors["roles"]["0"] == {missing: ["Missing data for required field."]}
    # The other fields of a PATCH stay optional.
    renamed = contacts_client.patch(
        f"/api/v1/people/{person['id']}", json={"first_name": "Ina"}, headers=coordinator
    )
    assert renamed.status_code == 200 and renamed.get_json()["last_name"] == "Ihde"


def test_vacant_premises_by_district_use_and_size(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    owner = make_org(kind="housing_company", name=f"WIRO {suffix()}")
    tenant = make_org()

    def premises(**fields: Any) -> dict[str, Any]:
        body = {
            "street": "Gerüstbauerring",
            "floor_area": "80",
            "use": "retail",
            "owner_id": owner["id"],
            **fields,
        }
        response = contacts_client.post("/api/v1/premises", json=body, headers=coordinator)
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    small = premises(district="Groß Klein", floor_area="45.5", house_number="1")
    big = premises(district="Groß Klein", floor_area="250", use="workshop")
    premises(district="Schmarl", floor_area="60")
    let = premises(district="Groß Klein", floor_area="70", status="let", tenant_id=tenant["id"])
    assert let["tenant_name"] == tenant["name"]

    def vacant(query: str) -> list[str]:
        body = contacts_client.get(
            f"/api/v1/premises/vacant?owner_id={owner['id']}&{query}", headers=coordinator
        ).get_json()
        return [item["id"] for item in body["items"]]

    assert vacant("district=Groß Klein") == [small["id"], big["id"]]
    assert vacant("district=Groß Klein&use=workshop") == [big["id"]]
    assert vacant("district=Groß Klein&min_area=50&max_area=300") == [big["id"]]
    assert vacant("district=Groß Klein&max_area=50") == [small["id"]]

    shop = make_org(kind="business")
    wrong_owner = contacts_client.post(
        "/api/v1/premises",
        json={"street": "X", "floor_area": "10", "use": "office", "owner_id": shop["id"]},
        headers=coordinator,
    )
    assert wrong_owner.status_code == 422 and "owner_id" in wrong_owner.get_json()["errors"]
    bad = contacts_client.post(
        "/api/v1/premises",
        json={"street": "X", "floor_area": "-1", "use": "bakery", "owner_id": owner["id"]},
        headers=coordinator,
    )
    assert bad.status_code == 422 and {"floor_area", "use"} <= bad.get_json()["errors"].keys()

    contacts_client.patch(
        f"/api/v1/premises/{small['id']}",
        json={"status": "let", "tenant_id": tenant["id"]},
        headers=coordinator,
    )
    assert vacant("district=Groß Klein") == [big["id"]]
    history = contacts_client.get(
        f"/api/v1/premises/{small['id']}/history", headers=coordinator
    ).get_json()
    assert history[-1]["after"] == {"status": "let", "tenant_id": tenant["id"]}


def test_the_premises_history_records_floor_areas_and_rents_as_numbers(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """As the API gives them: the history recorded "85.50" next to a record of 85.5."""
    owner = make_org(kind="landlord")
    body = {
        "street": "Kopenhagener Straße",
        "floor_area": "85.50",
        "rent_per_m2": "9.75",
        "use": "office",
        "owner_id": owner["id"],
    }
    made = contacts_client.post("/api/v1/premises", json=body, headers=coordinator).get_json()
    path = f"/api/v1/premises/{made['id']}"
    patched = contacts_client.patch(
        path, json={"floor_area": "92", "rent_per_m2": None}, headers=coordinator
    ).get_json()
    created, updated = contacts_client.get(f"{path}/history", headers=coordinator).get_json()
    assert (made["floor_area"], made["rent_per_m2"]) == (85.5, 9.75)
    assert (created["after"]["floor_area"], created["after"]["rent_per_m2"]) == (85.5, 9.75)
    assert updated["before"] == {"floor_area": 85.5, "rent_per_m2": 9.75}
    assert updated["after"] == {"floor_area": 92, "rent_per_m2": None}
    assert (patched["floor_area"], patched["rent_per_m2"]) == (92, None)
    for value in (created["after"]["floor_area"], *updated["before"].values()):
        assert isinstance(value, float)


def test_admin_maintains_districts_and_needs(
    contacts_app: Flask, contacts_client: FlaskClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    districts = contacts_client.get("/api/v1/districts", headers=viewer).get_json()
    assert {"Schmarl", "Groß Klein", "Lütten Klein", "Warnemünde", "other"} <= {
        d["name"] for d in districts
    }
    name = f"Neubaugebiet {suffix()}"
    created = contacts_client.post("/api/v1/districts", json={"name": name}, headers=admin)
    assert created.status_code == 201
    again = contacts_client.post("/api/v1/districts", json={"name": name}, headers=admin)
    assert again.status_code == 409
    retired = contacts_client.patch(
        f"/api/v1/districts/{created.get_json()['id']}", json={"active": False}, headers=admin
    )
    assert retired.get_json()["active"] is False
    for beyond in (2**31, 17592186044415):
        gone = contacts_client.patch(
            f"/api/v1/districts/{beyond}", json={"active": False}, headers=admin
        )
        assert gone.status_code == 404 and gone.mimetype == "application/problem+json"

    needs = contacts_client.get("/api/v1/needs", headers=viewer).get_json()
    assert {"Digitalisierung", "Online-Marketing", "Fachkräfte", "Fläche gesucht", "Nachfolge"} <= {
        n["label"] for n in needs
    }
    label = f"Energieberatung Ä{suffix()}"
    need = contacts_client.post("/api/v1/needs", json={"label": label}, headers=admin).get_json()
    assert need["key"].startswith("energieberatung-ae")
    relabelled = contacts_client.patch(
        f"/api/v1/needs/{need['key']}", json={"label": label + " neu"}, headers=admin
    ).get_json()
    assert relabelled["label"] == label + " neu"
    events = _events(contacts_app, need["key"])
    assert [(e.type, e.version) for e in events] == [
        ("contacts.need.created", 1),
        ("contacts.need.updated", 2),
    ]
    assert events[1].payload == {"key": need["key"], "label": label + " neu", "active": True}


def test_extreme_values_are_client_errors_not_500(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    huge = contacts_client.get(f"{ORGS}?page=100000000000000000000", headers=coordinator)
    assert huge.status_code == 200 and huge.get_json()["items"] == []
    too_many = contacts_client.post(
        ORGS, json={"kind": "business", "name": "X", "employees": 10**12}, headers=coordinator
    )
    assert too_many.status_code == 422 and "employees" in too_many.get_json()["errors"]
    owner = make_org(kind="landlord")
    big = contacts_client.post(
        "/api/v1/premises",
        json={"street": "X", "floor_area": "1e12", "use": "office", "owner_id": owner["id"]},
        headers=coordinator,
    )
    assert big.status_code == 422 and "floor_area" in big.get_json()["errors"]
    for query in ("?per_page=0", "?min_area=abc", "?district=" + "x" * 5000):
        response = contacts_client.get(f"/api/v1/premises{query}", headers=coordinator)
        assert response.status_code in (200, 422), query


def test_openapi_documents_the_register(contacts_client: FlaskClient) -> None:
    paths = contacts_client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in (
        "/api/v1/organisations",
        "/api/v1/organisations/{organisation_id}",
        "/api/v1/organisations/{record_id}/history",
        "/api/v1/organisations/{organisation_id}/merge",
        "/api/v1/people",
        "/api/v1/premises/vacant",
        "/api/v1/search",
        "/api/v1/imports",
        "/api/v1/imports/{import_id}/commit",
        "/api/v1/organisations/export.csv",
        "/api/v1/duplicates",
        "/api/v1/needs",
        "/api/v1/districts",
    ):
        assert path in paths, path
    upload = paths["/api/v1/imports"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = contacts_client.get("/api/v1/openapi.json").get_json()["components"]["schemas"][
        upload["schema"]["$ref"].rsplit("/", 1)[-1]
    ]
    assert {"file", "mapping"} <= schema["properties"].keys()
