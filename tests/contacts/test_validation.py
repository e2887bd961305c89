"""Input the register accepts is stored, or refused with a 422 naming the field: no value a
schema lets through overflows a column, and folding treats every spelling of a text alike."""

from __future__ import annotations

import io
import unicodedata
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from services.contacts.models import Change, OutboxEvent
from services.contacts.normalise import index_terms, match_address, match_name, match_phone
from shared.cli import main
from shared.db import get_database

from .conftest import Maker, suffix
from .test_import import _commit, _tagged, _upload

PROBLEM = "application/problem+json"


def _owner(make_org: Maker) -> str:
    return str(make_org(kind="landlord", name=f"Vermieter {suffix()}")["id"])


def _errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == PROBLEM
    return dict(response.get_json()["errors"])


# Derived columns hold whatever the fields they are made of may hold.


def test_long_folded_values_are_stored(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """ß folds to ss, a ligature to many letters, four numbers in one phone field: the
    folded name, address, phone and search terms are longer than the values given."""
    token = suffix()
    phones = make_org(
        name=f"Vier Nummern {token}",
        phone="0381 1234567 / 0171 2345678 / 0381 7654321 / 0381 9999999",
    )
    sharp = make_org(name="ß" * 300)
    street = make_org(
        name=f"Umlaut-Straße {token}", street="Ü" * 200, house_number="9" * 20, postcode="18107"
    )
    ligatures = make_org(name="ﷺ" * 300, street="ﷺ" * 200, tags=["ﷺ" * 80] * 3)
    # A Hangul syllable folds to two or three letters: one word of 270 is 2.5 kB folded,
    # more than a term of a tsvector holds.
    hangul = "".join(chr(0xAC00 + 37 * i) for i in range(270)) + "ﷺ" * 30
    korean = make_org(name=hangul)
    # Terms of 2 kB each, from 600 tags: more than a tsvector holds (1 MB).
    tags = make_org(
        name=f"Viele Schlagworte {token}", tags=[f"{i:03}{'ﷺ' * 77}" for i in range(600)]
    )
    assert len(tags["tags"]) == 600
    assert phones["phone"].endswith("9999999") and sharp["name"] == "ß" * 300
    assert street["street"] == "Ü" * 200 and ligatures["name"] == "ﷺ" * 300
    assert korean["name"] == hangul
    for query in ("ß" * 200, "ﷺ" * 200):
        found = contacts_client.get(
            "/api/v1/search", query_string={"q": query}, headers=coordinator
        )
        assert found.status_code == 200, found.get_json()
    found = contacts_client.get(
        "/api/v1/search", query_string={"q": "ss" * 100}, headers=coordinator
    ).get_json()["items"]
    assert sharp["id"] in {hit["id"] for hit in found}
    found = contacts_client.get(
        "/api/v1/search", query_string={"q": f"schlagworte {token}"}, headers=coordinator
    ).get_json()["items"]
    assert [hit["id"] for hit in found] == [tags["id"]]


def test_a_long_phone_in_an_import_is_previewed(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    content = (
        "name;phone\r\n"
        f"Viele Nummern {suffix()};0381 1234567 / 0171 2345678 / 0381 7654321 / 0381 9999999\r\n"
    ).encode()
    response = contacts_client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(content), "nummern.csv")},
        headers=coordinator,
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["valid_rows"] == 1


# Websites: a host with umlauts (an internationalised domain name) is a host; see also
# test_consistency.test_a_website_is_taken_as_people_write_it.


def test_an_import_takes_a_website_with_umlauts_and_refuses_one_that_is_no_address(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"web{suffix()}"
    content = (
        "name;website;tags\r\n"
        f"Bäckerei Müller {tag};www.bäckerei-müller.de;{tag}\r\n"
        f"Kaputt {tag};http://bäckerei-.de;{tag}\r\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["valid_rows"] == 1, body["errors"]
    [error] = body["errors"]
    assert (error["line"], set(error["errors"])) == (3, {"website"})
    assert _commit(contacts_client, coordinator, body["id"]).get_json()["created_count"] == 1
    [org] = _tagged(contacts_client, coordinator, tag)
    assert org["website"] == "https://www.bäckerei-müller.de"


def test_an_import_refuses_a_website_whose_port_is_out_of_range(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"port{suffix()}"
    content = (
        "name;website;tags\r\n"
        f"Hafen {tag};https://www.beispiel.de:8080/;{tag}\r\n"
        f"Zu groß {tag};https://www.beispiel.de:99999/;{tag}\r\n"
        f"Null {tag};https://bäckerei-müller.de:0/;{tag}\r\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["valid_rows"] == 1, body["errors"]
    port = ["A port is a number from 1 to 65535."]
    assert [(error["line"], error["errors"]) for error in body["errors"]] == [
        (3, {"website": port}),
        (4, {"website": port}),
    ]


# Patterns: ASCII digits, and the end of the text (Python's $ also matches before a
# final line break).


@pytest.mark.parametrize("postcode", ["18107\n", "١٨١٠٧", "１８１０７", "1810"])
def test_a_postcode_is_five_ascii_digits(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, postcode: str
) -> None:
    premises = contacts_client.post(
        "/api/v1/premises",
        json={
            "street": "Warnowallee",
            "floor_area": "80",
            "use": "retail",
            "owner_id": _owner(make_org),
            "postcode": postcode,
        },
        headers=coordinator,
    )
    assert set(_errors(premises)) == {"postcode"}
    organisation = contacts_client.post(
        "/api/v1/organisations",
        json={"kind": "business", "name": f"Plz {suffix()}", "postcode": postcode},
        headers=coordinator,
    )
    assert set(_errors(organisation)) == {"postcode"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("wz_code", "47.11\n"), ("wz_code", "٤٧.١١"), ("phone", "0381 123\n")],
)
def test_codes_and_phones_end_where_they_seem_to(
    contacts_client: FlaskClient, coordinator: dict[str, str], field: str, value: str
) -> None:
    response = contacts_client.post(
        "/api/v1/organisations",
        json={"kind": "business", "name": f"Muster {suffix()}", field: value},
        headers=coordinator,
    )
    assert set(_errors(response)) == {field}


def test_the_published_patterns_mean_the_same_in_ecma_262(contacts_app: Flask) -> None:
    """The OpenAPI document publishes the patterns for clients, which read them as
    ECMA-262: no ``\\d`` (Unicode digits in Python), no ``$`` (a final line break)."""
    document = contacts_app.test_client().get("/api/v1/openapi.json").get_json()
    patterns = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    anchored = [p for p in patterns if p.startswith("^")]
    assert anchored, patterns
    assert not [p for p in anchored if "\\d" in p or p.endswith("$")]


# Numbers: ranges and places the columns hold; NaN and Infinity are not numbers here.


@pytest.mark.parametrize(
    "value", ["1e200000", "1e-20000", "NaN", "Infinity", "-1", "100000000", "1e308"]
)
@pytest.mark.parametrize("field", ["min_area", "max_area"])
def test_area_filters_out_of_range_are_422(
    contacts_client: FlaskClient, coordinator: dict[str, str], field: str, value: str
) -> None:
    for path in ("/api/v1/premises", "/api/v1/premises/vacant"):
        response = contacts_client.get(path, query_string={field: value}, headers=coordinator)
        if value == "1e-20000":  # a tiny area: rounded up to the next hundredth
            assert response.status_code == 200, response.get_json()
        else:
            assert set(_errors(response)) == {field}


def test_area_filters_are_exact_at_hundredths(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    owner = _owner(make_org)
    for area in ("50.00", "50.01"):
        created = contacts_client.post(
            "/api/v1/premises",
            json={"street": "Flächenweg", "floor_area": area, "use": "office", "owner_id": owner},
            headers=coordinator,
        )
        assert created.status_code == 201

    def areas(**query: str) -> list[float]:
        body = contacts_client.get(
            "/api/v1/premises", query_string={"owner_id": owner, **query}, headers=coordinator
        ).get_json()
        return sorted(item["floor_area"] for item in body["items"])

    assert areas(min_area="50.001") == [50.01]
    assert areas(max_area="50.009") == [50]
    assert areas(min_area="50", max_area="50.01") == [50, 50.01]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"floor_area": "1e200000"}, "floor_area"),
        ({"floor_area": "NaN"}, "floor_area"),
        ({"floor_area": "0.001"}, "floor_area"),
        ({"rent_per_m2": "1e-20000"}, None),  # rounds to 0.00, a rent that can be stored
        ({"rent_per_m2": "-Infinity"}, "rent_per_m2"),
    ],
)
def test_premises_numbers_are_checked(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    body: dict[str, str],
    field: str | None,
) -> None:
    fields = {
        "street": "Zahlenweg",
        "floor_area": "10",
        "use": "office",
        "owner_id": _owner(make_org),
    }
    response = contacts_client.post(
        "/api/v1/premises", json={**fields, **body}, headers=coordinator
    )
    if field is None:
        assert response.status_code == 201, response.get_json()
    else:
        assert set(_errors(response)) == {field}


@pytest.mark.parametrize("version", [0, -1, 2**80])
def test_a_version_out_of_range_is_422(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, version: int
) -> None:
    org = make_org()
    response = contacts_client.patch(
        f"/api/v1/organisations/{org['id']}", json={"version": version}, headers=coordinator
    )
    assert set(_errors(response)) == {"version"}


def test_a_need_key_always_fits(
    contacts_app: Flask, contacts_client: FlaskClient, admin: dict[str, str]
) -> None:
    """Keys are made from labels (Ä -> ae doubles their length) and name the need in its
    history and events."""
    label = "Ä" * 100 + suffix()
    made = contacts_client.post("/api/v1/needs", json={"label": label}, headers=admin)
    assert made.status_code == 201, made.get_json()
    key = made.get_json()["key"]
    assert 0 < len(key) <= 64 and not key.endswith("-")
    with get_database(contacts_app).session() as session:
        assert session.scalar(
            select(OutboxEvent.payload).where(OutboxEvent.aggregate_id == key)
        ) == {"key": key, "label": label, "active": True}
    too_long = contacts_client.post(
        "/api/v1/needs", json={"label": f"Lang {suffix()}", "key": "k" * 65}, headers=admin
    )
    assert set(_errors(too_long)) == {"key"}
    longest = "k" * 56 + suffix()
    fits = contacts_client.post(
        "/api/v1/needs", json={"label": f"Lang {suffix()}", "key": longest}, headers=admin
    )
    assert fits.status_code == 201 and fits.get_json()["key"] == longest


def test_a_boolean_is_true_or_false_not_a_number(
    contacts_client: FlaskClient, admin: dict[str, str], coordinator: dict[str, str]
) -> None:
    made = contacts_client.post("/api/v1/needs", json={"label": f"Flag {suffix()}"}, headers=admin)
    path = f"/api/v1/needs/{made.get_json()['key']}"
    for number in (0, 1, 0.0):
        refused = contacts_client.patch(path, json={"active": number}, headers=admin)
        assert _errors(refused) == {"active": ["Not a valid boolean."]}, number
    retired = contacts_client.patch(path, json={"active": False}, headers=admin)
    assert retired.status_code == 200 and retired.get_json()["active"] is False
    # In a query string a boolean is text, in any of its usual spellings.
    for text_value in ("true", "1", "on"):
        listed = contacts_client.get(
            "/api/v1/organisations", query_string={"archived": text_value}, headers=coordinator
        )
        assert listed.status_code == 200, text_value


# People's names.


def test_a_person_keeps_one_of_the_names(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    created = contacts_client.post(
        "/api/v1/people",
        json={"first_name": "Erika", "last_name": f"M{suffix()}"},
        headers=coordinator,
    )
    person = created.get_json()
    path = f"/api/v1/people/{person['id']}"
    emptied = contacts_client.patch(path, json={"first_name": ""}, headers=coordinator)
    assert emptied.status_code == 200, emptied.get_json()
    assert emptied.get_json()["first_name"] == ""
    assert emptied.get_json()["last_name"] == person["last_name"]
    assert set(
        _errors(contacts_client.patch(path, json={"last_name": " "}, headers=coordinator))
    ) == {"last_name"}
    both = contacts_client.patch(
        path, json={"first_name": "", "last_name": ""}, headers=coordinator
    )
    assert set(_errors(both)) == {"last_name"}
    renamed = contacts_client.patch(
        path, json={"first_name": "Max", "last_name": ""}, headers=coordinator
    )
    assert renamed.status_code == 200 and renamed.get_json()["last_name"] == ""
    none = contacts_client.post("/api/v1/people", json={"first_name": ""}, headers=coordinator)
    assert set(_errors(none)) == {"last_name"}


# Folding: decomposed text (NFD, as macOS writes it) is the same text.


def test_decomposed_text_folds_as_composed() -> None:
    composed = "Bäckerei Müller Groß, Güstrower Straße"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert index_terms(decomposed) == index_terms(composed)
    assert "mueller" in index_terms(decomposed)
    name, street = (unicodedata.normalize("NFD", text) for text in ("Müller Söhne", "Öhrweg"))
    assert match_name(name) == match_name("Müller Söhne") == "mueller soehne"
    assert match_address(street, "1") == match_address("Öhrweg", "1")
    haftung = unicodedata.normalize("NFD", "Jörg UG (haftungsbeschränkt)")
    assert match_name(haftung) == "joerg"


def test_decomposed_names_are_found_and_paired(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    nfd = make_org(name=unicodedata.normalize("NFD", f"Müller Söhne {token}"), street="Am Strom 1")
    assert nfd["name"] == unicodedata.normalize("NFD", f"Müller Söhne {token}")  # as given
    nfc = make_org(name=f"Müller Söhne {token}", street="Am Strom 1")
    person = contacts_client.post(
        "/api/v1/people",
        json={"first_name": unicodedata.normalize("NFD", "Jördis"), "last_name": f"W{token}"},
        headers=coordinator,
    ).get_json()
    for query in (f"müller {token}", f"mueller {token}", f"sohne {token}"):
        hits = contacts_client.get(
            "/api/v1/search", query_string={"q": query}, headers=coordinator
        ).get_json()["items"]
        assert {nfd["id"], nfc["id"]} <= {hit["id"] for hit in hits}, query
    hits = contacts_client.get(
        "/api/v1/search", query_string={"q": f"jördis w{token}"}, headers=coordinator
    ).get_json()["items"]
    assert person["id"] in {hit["id"] for hit in hits}
    pairs = contacts_client.get(
        f"/api/v1/duplicates?organisation_id={nfd['id']}", headers=coordinator
    ).get_json()
    assert [(p["first"]["id"], p["second"]["id"], p["reasons"]) for p in pairs] == [
        (*sorted([nfd["id"], nfc["id"]]), ["name"])
    ]


# Phones: the same German number in its usual spellings.


def test_german_numbers_match_in_every_spelling() -> None:
    spellings = [
        "0381 1234567",
        "+49 381 1234567",
        "+49 (0)381 1234567",
        "+49 (0) 381 / 123 45 67",
        "0049 381 1234567",
        "(0381) 123 45 67",
        "0381-1234567",
    ]
    assert {match_phone(s) for s in spellings} == {"03811234567"}  # as dialled in Germany
    assert match_phone("+43 (0)1 5877") == match_phone("0043 1 5877") == "004315877"
    assert match_phone("+39 06 1234567") == "0039061234567"  # Rome's 0 is not a trunk prefix
    assert match_phone("0381 1234567") != match_phone("0381 1234568")
    assert match_phone("") is None and match_phone(" / ") is None and match_phone("+") is None


def test_phone_duplicates_across_spellings(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    number = "".join(str(int(c, 16) % 10) for c in suffix())[:7]
    national = make_org(name=f"Inland {suffix()}", phone=f"0381 {number}")
    international = make_org(name=f"Ausland {suffix()}", phone=f"+49 (0)381 {number}")
    pairs = contacts_client.get(
        f"/api/v1/duplicates?organisation_id={national['id']}", headers=coordinator
    ).get_json()
    assert [(p["first"]["id"], p["second"]["id"], p["reasons"]) for p in pairs] == [
        (*sorted([national["id"], international["id"]]), ["phone"])
    ]


# Districts: a rename is an edit of every organisation in the district.


def test_renaming_a_district_updates_its_organisations(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    admin: dict[str, str],
    coordinator: dict[str, str],
    make_org: Maker,
) -> None:
    old, new = f"Altviertel {suffix()}", f"Neuviertel {suffix()}"
    district = contacts_client.post("/api/v1/districts", json={"name": old}, headers=admin)
    assert district.status_code == 201
    inside = make_org(district=old)
    archived = make_org(district=old)
    contacts_client.post(
        f"/api/v1/organisations/{archived['id']}/archive",
        json={"archived": True},
        headers=coordinator,
    )
    outside = make_org()
    renamed = contacts_client.patch(
        f"/api/v1/districts/{district.get_json()['id']}", json={"name": new}, headers=admin
    )
    assert renamed.status_code == 200, renamed.get_json()

    def found(query: str, **args: Any) -> set[str]:
        hits = contacts_client.get(
            "/api/v1/search", query_string={"q": query, **args}, headers=coordinator
        ).get_json()["items"]
        return {hit["id"] for hit in hits}

    assert found(new) == {inside["id"]}
    assert found(new, archived="true") == {inside["id"], archived["id"]}
    assert found(old, archived="true") == set()
    current = contacts_client.get(f"/api/v1/organisations/{inside['id']}", headers=coordinator)
    assert current.get_json()["district"] == new
    assert current.get_json()["version"] == inside["version"] + 1
    with get_database(contacts_app).session() as session:
        for org in (inside, archived):
            events = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id == org["id"])
                .order_by(OutboxEvent.id)
            ).all()
            assert events[-1].type == "contacts.organisation.updated"
            assert events[-1].payload["district"] == new
            change = session.scalars(
                select(Change)
                .where(Change.entity_type == "organisation", Change.entity_id == org["id"])
                .order_by(Change.id.desc())
            ).first()
            assert change is not None
            assert (change.action, change.before, change.after) == (
                "updated",
                {"district": old},
                {"district": new},
            )
        assert (
            session.scalar(
                select(OutboxEvent.id).where(
                    OutboxEvent.aggregate_id == outside["id"],
                    OutboxEvent.type == "contacts.organisation.updated",
                )
            )
            is None
        )


# Records folded by an earlier version are folded again by the command line.


def test_reindex_folds_earlier_records_again(
    cli_env: dict[str, str],
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
) -> None:
    token = suffix()
    number = "".join(str(int(c, 16) % 10) for c in suffix())[:7]
    international = make_org(name=f"Wäscherei {token}", phone=f"+49 (0)381 {number}")
    national = make_org(name=f"Reinigung {token}", phone=f"0381 {number}")
    person = contacts_client.post(
        "/api/v1/people", json={"first_name": "Jürgen", "last_name": token}, headers=coordinator
    ).get_json()
    with get_database(contacts_app).session() as session:  # as an earlier version wrote them
        session.execute(
            text(
                "UPDATE organisations SET match_phone = :old, search_text = '',"
                " search_vector = ''::tsvector, name_vector = ''::tsvector WHERE id = :id"
            ),
            {"old": f"00381{number}", "id": international["id"]},
        )
        session.execute(
            text("UPDATE people SET search_text = '', search_vector = ''::tsvector WHERE id = :id"),
            {"id": person["id"]},
        )
        session.commit()

    def state() -> tuple[set[str], list[Any], dict[str, Any]]:
        hits = contacts_client.get(
            "/api/v1/search", query_string={"q": token}, headers=coordinator
        ).get_json()["items"]
        pairs = contacts_client.get(
            f"/api/v1/duplicates?organisation_id={national['id']}", headers=coordinator
        ).get_json()
        current = contacts_client.get(
            f"/api/v1/organisations/{international['id']}", headers=coordinator
        ).get_json()
        return {hit["id"] for hit in hits}, pairs, current

    hits, pairs, _ = state()
    assert hits == {national["id"]} and pairs == []
    result = CliRunner().invoke(main, ["contacts", "reindex"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "Folded again" in result.output
    hits, pairs, current = state()
    assert hits == {national["id"], international["id"], person["id"]}
    assert [p["reasons"] for p in pairs] == [["phone"]]
    # Derived data only: not an edit.
    assert (current["version"], current["updated_at"]) == (
        international["version"],
        international["updated_at"],
    )
