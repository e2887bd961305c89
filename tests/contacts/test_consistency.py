"""The register's API agrees with itself and with its OpenAPI document: what a list can be
filtered and sorted by, which vocabulary can be given, what a number is, when a record
counts as changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from .conftest import Maker, new_district, new_need, suffix

ORGS = "/api/v1/organisations"
PREMISES = "/api/v1/premises"


def _errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    return dict(response.get_json()["errors"])


def _premises(
    client: FlaskClient, headers: dict[str, str], owner: dict[str, Any], **fields: Any
) -> Any:
    body = {"street": "Gerüstbauerring", "floor_area": 80, "use": "retail", "owner_id": owner["id"]}
    return client.post(PREMISES, json={**body, **fields}, headers=headers)


# Retired vocabulary.


def test_a_retired_district_or_need_is_kept_but_not_given_anew(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Maker,
) -> None:
    district = new_district(contacts_client, admin, f"Altes Viertel {suffix()}")
    need = new_need(contacts_client, admin, f"Telefonbuch {suffix()}")
    active = new_need(contacts_client, admin, f"Glasfaser {suffix()}")
    holder = make_org(district=district["name"], needs=[need["key"]])
    other = make_org()
    merged = make_org(district=district["name"], needs=[need["key"]])
    landlord = make_org(kind="landlord")
    for path, body in (
        (f"/api/v1/districts/{district['id']}", {"active": False}),
        (f"/api/v1/needs/{need['key']}", {"active": False}),
    ):
        assert contacts_client.patch(path, json=body, headers=admin).status_code == 200

    # Not given to a new organisation, nor to one that does not have it.
    new = {"kind": "business", "name": f"Neu {suffix()}"}
    refused = contacts_client.post(
        ORGS, json={**new, "district": district["name"]}, headers=coordinator
    )
    assert "retired" in " ".join(_errors(refused)["district"])
    refused = contacts_client.post(ORGS, json={**new, "needs": [need["key"]]}, headers=coordinator)
    assert "Retired" in " ".join(_errors(refused)["needs"])
    for body, field in (
        ({"district": district["name"]}, "district"),
        ({"needs": [need["key"]]}, "needs"),
    ):
        refused = contacts_client.patch(f"{ORGS}/{other['id']}", json=body, headers=coordinator)
        assert field in _errors(refused)
    refused = _premises(contacts_client, coordinator, landlord, district=district["name"])
    assert "district" in _errors(refused)

    # Kept by the one that has it: sent again, or left out of a change of other fields.
    path = f"{ORGS}/{holder['id']}"
    kept = contacts_client.patch(
        path,
        json={"district": district["name"], "needs": [need["key"], active["key"]]},
        headers=coordinator,
    )
    assert kept.status_code == 200, kept.get_json()
    kept = contacts_client.patch(path, json={"status": "active"}, headers=coordinator)
    assert kept.status_code == 200, kept.get_json()
    body = kept.get_json()
    assert body["district"] == district["name"]
    assert set(body["needs"]) == {need["key"], active["key"]}

    # A merge keeps what the merged organisation had.
    joined = contacts_client.post(
        f"{ORGS}/{other['id']}/merge", json={"other_id": merged["id"]}, headers=coordinator
    )
    assert joined.status_code == 200, joined.get_json()
    assert joined.get_json()["district"] == district["name"]
    assert joined.get_json()["needs"] == [need["key"]]


# updated_at moves with the version.


def _time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["updated_at"])


def _history(client: FlaskClient, headers: dict[str, str], path: str) -> int:
    return len(client.get(f"{path}/history", headers=headers).get_json())


def test_a_patch_that_changes_nothing_leaves_updated_at(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org(name=f"Stillstand {suffix()}", city="Rostock", tags=["a"])
    landlord = make_org(kind="landlord")
    person = contacts_client.post(
        "/api/v1/people",
        json={"last_name": "Stein", "roles": [{"organisation_id": org["id"], "role": "owner"}]},
        headers=coordinator,
    ).get_json()
    premises = _premises(contacts_client, coordinator, landlord).get_json()
    org = contacts_client.get(f"{ORGS}/{org['id']}", headers=coordinator).get_json()

    for path, record, same in (
        (f"{ORGS}/{org['id']}", org, {"name": org["name"], "city": "Rostock", "tags": ["a"]}),
        (f"/api/v1/people/{person['id']}", person, {"last_name": "Stein"}),
        (f"{PREMISES}/{premises['id']}", premises, {"floor_area": "80.00", "use": "retail"}),
    ):
        entries = _history(contacts_client, coordinator, path)
        for body in ({}, same):
            response = contacts_client.patch(path, json=body, headers=coordinator)
            assert response.status_code == 200, response.get_json()
            after = response.get_json()
            assert (after["version"], after["updated_at"]) == (
                record["version"],
                record["updated_at"],
            ), (path, body)
        assert _history(contacts_client, coordinator, path) == entries

    # A person renamed: the organisation's search text names them anew, which is no change
    # of the organisation.
    renamed = contacts_client.patch(
        f"/api/v1/people/{person['id']}", json={"last_name": "Steinmetz"}, headers=coordinator
    ).get_json()
    assert renamed["version"] == person["version"] + 1
    assert _time(renamed) > _time(person)
    now = contacts_client.get(f"{ORGS}/{org['id']}", headers=coordinator).get_json()
    assert (now["version"], now["updated_at"]) == (org["version"], org["updated_at"])

    changed = contacts_client.patch(
        f"{ORGS}/{org['id']}", json={"city": "Warnemünde"}, headers=coordinator
    ).get_json()
    assert changed["version"] == org["version"] + 1
    assert _time(changed) > _time(org)


# Numbers.


def test_premises_areas_and_rents_are_json_numbers_within_documented_bounds(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    landlord = make_org(kind="landlord")
    created = _premises(contacts_client, coordinator, landlord, floor_area="80.5", rent_per_m2=7.25)
    assert created.status_code == 201, created.get_json()
    listed = contacts_client.get(
        f"{PREMISES}?owner_id={landlord['id']}", headers=coordinator
    ).get_json()["items"]
    for body in (created.get_json(), listed[0]):
        assert (body["floor_area"], body["rent_per_m2"]) == (80.5, 7.25)
        assert isinstance(body["floor_area"], float) and isinstance(body["rent_per_m2"], float)
    largest = _premises(contacts_client, coordinator, landlord, floor_area="9999999.99")
    assert largest.get_json()["floor_area"] == 9999999.99

    document = contacts_client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert document["PremisesOut"]["properties"]["floor_area"]["type"] == "number"
    for schema in ("PremisesIn", "PremisesPatch"):
        area = document[schema]["properties"]["floor_area"]
        assert (area["minimum"], area.get("exclusiveMinimum")) == (0, True)
        rent = document[schema]["properties"]["rent_per_m2"]
        assert (rent["minimum"], rent.get("exclusiveMinimum", False)) == (0, False)
    assert "floor_area" in _errors(_premises(contacts_client, coordinator, landlord, floor_area=0))
    free = _premises(contacts_client, coordinator, landlord, rent_per_m2=0)
    assert free.status_code == 201 and free.get_json()["rent_per_m2"] == 0


@pytest.mark.parametrize("employees", [1.5, 12.000001, -0.5])
def test_a_number_of_employees_is_a_whole_number(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, employees: Any
) -> None:
    new = {"kind": "business", "name": f"Zählt {suffix()}", "employees": employees}
    assert "employees" in _errors(contacts_client.post(ORGS, json=new, headers=coordinator))
    org = make_org(employees=3)
    path = f"{ORGS}/{org['id']}"
    assert "employees" in _errors(
        contacts_client.patch(path, json={"employees": employees}, headers=coordinator)
    )
    assert "version" in _errors(
        contacts_client.patch(path, json={"status": "active", "version": 1.5}, headers=coordinator)
    )
    assert contacts_client.get(path, headers=coordinator).get_json()["employees"] == 3


def test_whole_numbers_are_read_however_written(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """As a CSV cell gives them ("12"), and as JSON may write them (12.0)."""
    assert make_org(employees="12")["employees"] == 12
    assert make_org(employees=12.0)["employees"] == 12
    document = contacts_client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert document["OrganisationIn"]["properties"]["employees"]["type"] == "integer"
    assert document["OrganisationPatch"]["properties"]["version"]["type"] == "integer"


# WZ 2008: section A-U, division NN, group NN.N, class NN.NN, subclass NN.NN.N.


@pytest.mark.parametrize("code", ["G", "U", "47", "47.1", "47.11", "47.11.1", "10.71.0"])
def test_wz_codes_of_every_level_are_accepted(make_org: Maker, code: str) -> None:
    assert make_org(wz_code=code)["wz_code"] == code


@pytest.mark.parametrize(
    "code",
    [
        "10.71.12",
        "47.1.1",
        "47.1.12",
        "47.111",
        "47.11.",
        "47.",
        "4",
        "g",
        "V",
        "AB",
        "G47",
        "47,11",
    ],
)
def test_other_wz_codes_are_refused(
    contacts_client: FlaskClient, coordinator: dict[str, str], code: str
) -> None:
    response = contacts_client.post(
        ORGS, json={"kind": "business", "name": "WZ", "wz_code": code}, headers=coordinator
    )
    assert "wz_code" in _errors(response)


# Filters.


def test_district_and_need_filters_take_names_as_typed_and_refuse_unknown_ones(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Maker,
) -> None:
    token = suffix()
    district = new_district(contacts_client, admin, f"Groß Käthen {token}")
    need = new_need(contacts_client, admin, f"Übergabe {token}")
    tag = f"t{token}"
    found = make_org(district=district["name"], needs=[need["key"]], tags=[tag])
    make_org(tags=[tag])

    def ids(path: str, **query: Any) -> list[str]:
        response = contacts_client.get(path, query_string=query, headers=coordinator)
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    for typed in (district["name"], f"gross käthen {token}", f"GROSS  KATHEN {token}"):
        assert ids(ORGS, tags=tag, district=typed) == [found["id"]], typed
    for typed in (need["key"], need["label"], f"ubergabe {token}"):
        assert ids(ORGS, tags=tag, needs=typed) == [found["id"]], typed
    # Repeated, the filter is any of them.
    assert ids(ORGS, tags=tag, district=[f"gross kathen {token}", "Schmarl"]) == [found["id"]]

    for query, field in (
        ({"district": f"Atlantis {token}"}, "district"),
        ({"district": ["Schmarl", f"Atlantis {token}"]}, "district"),
        ({"needs": f"zauberei-{token}"}, "needs"),
        # Empty names no district or need: refused too (the document says minLength 1).
        ({"district": ""}, "district"),
        ({"needs": ["", need["key"]]}, "needs"),
    ):
        for path in (ORGS, f"{ORGS}/export.csv", PREMISES, f"{PREMISES}/vacant"):
            if field == "needs" and path.startswith(PREMISES):
                continue
            response = contacts_client.get(path, query_string=query, headers=coordinator)
            assert field in _errors(response), (path, query)

    landlord = make_org(kind="landlord")
    premises = _premises(contacts_client, coordinator, landlord, district=district["name"])
    assert premises.status_code == 201, premises.get_json()
    for path in (PREMISES, f"{PREMISES}/vacant"):
        typed = f"gross kathen {token}"
        assert ids(path, owner_id=landlord["id"], district=typed) == [premises.get_json()["id"]]


# Sorting.


def test_names_sort_in_german_order(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"t{suffix()}"
    names = ["Ärztehaus", "Bäckerei Müller", "Blumen Schröder", "café central", "Öko-Laden", "WIRO"]
    for name in reversed(names):
        make_org(name=name, tags=[tag])

    def listed(sort: str) -> list[str]:
        body = contacts_client.get(
            ORGS, query_string={"tags": tag, "sort": sort}, headers=coordinator
        ).get_json()
        return [item["name"] for item in body["items"]]

    assert listed("name") == names
    assert listed("-name") == names[::-1]


def test_a_website_is_taken_as_people_write_it(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    for given, stored in (
        ("www.beispiel.de", "https://www.beispiel.de"),
        ("beispiel.de/kontakt", "https://beispiel.de/kontakt"),
        ("http://beispiel.de", "http://beispiel.de"),
        # An internationalised domain name is kept as written.
        ("www.bäckerei.de", "https://www.bäckerei.de"),
        ("https://bäckerei-müller.de/angebot", "https://bäckerei-müller.de/angebot"),
        (
            "Bäckerei-Müller.de/Brötchen?sorte=Körner",
            "https://Bäckerei-Müller.de/Brötchen?sorte=Körner",
        ),
        ("http://fischräucherei-warnemünde.de:8080", "http://fischräucherei-warnemünde.de:8080"),
        ("https://straßenfest.рф", "https://straßenfest.рф"),
    ):
        assert make_org(website=given)["website"] == stored
    for wrong in (
        "keine",
        "ftp://beispiel.de",
        "www",
        # Hosts that are no domain names (IDNA 2008), and addresses with spaces.
        "http://-.de",
        "http://bäckerei-.de",
        "https://bäck erei.de",
        "bäckerei..de",
        "https://bäckerei.de/mit leerzeichen",
        "https://♥.de",
        "https://bäckerei_müller.de",
        "https://bäckerei.de:80a",
        "ftp://bäckerei.de",
        "bäckerei",
    ):
        response = contacts_client.post(
            "/api/v1/organisations",
            json={"kind": "business", "name": f"Web {suffix()}", "website": wrong},
            headers=coordinator,
        )
        assert response.status_code == 422 and "website" in response.get_json()["errors"]


def test_a_website_port_is_one_of_1_to_65535_in_ascii_digits(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """The URL check takes any number of any digits after the host's colon."""
    for port in ("1", "8080", "65535"):
        for host in ("www.beispiel.de", "bäckerei-müller.de"):
            website = f"https://{host}:{port}/"
            assert make_org(website=website)["website"] == website
    org = make_org(website="https://www.beispiel.de/")
    for port in ("99999", "65536", "0", "00", "٨٠", "99999999999999999999"):
        for host in ("www.beispiel.de", "bäckerei-müller.de"):
            body = {"website": f"https://{host}:{port}/"}
            created = contacts_client.post(
                ORGS,
                json={"kind": "business", "name": f"Web {suffix()}", **body},
                headers=coordinator,
            )
            changed = contacts_client.patch(f"{ORGS}/{org['id']}", json=body, headers=coordinator)
            for response in (created, changed):
                assert _errors(response) == {"website": ["A port is a number from 1 to 65535."]}
    shown = contacts_client.get(f"{ORGS}/{org['id']}", headers=coordinator).get_json()
    assert shown["website"] == "https://www.beispiel.de/"
