"""Search as a German user types it, against PostgreSQL full-text search."""

from __future__ import annotations

from flask.testing import FlaskClient

from services.contacts.normalise import index_terms, match_name, query_terms, tsquery
from services.contacts.services.search import CANDIDATES

from .conftest import Maker, role, suffix


def _search(client: FlaskClient, headers: dict[str, str], q: str) -> list[str]:
    response = client.get("/api/v1/search", query_string={"q": q, "limit": 100}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return [hit["id"] for hit in response.get_json()["items"]]


def test_folding_without_the_database() -> None:
    assert {"muller", "mueller"} <= set(index_terms("Müller"))
    assert "muller" in index_terms("Mueller")
    assert {"gross", "klein"} <= set(index_terms("Groß Klein"))
    assert "hauptstrasse" in index_terms("Hauptstr. 5")
    assert tsquery("  ") is None
    assert tsquery("a'b | c & !d:*") == "'a':* & 'b':* & 'c':* & 'd':*"
    assert tsquery("Müller Straße") == tsquery("mueller strasse") == "'muller':* & 'strasse':*"
    for spelling in ("Müller", "Mueller", "Muller", "Steuerberatung", "Groß", "Café"):
        (key,) = query_terms(spelling)
        assert key in index_terms(spelling), spelling
    assert query_terms("Hauptstr.") == ["hauptstr"]  # a prefix of "hauptstrasse"
    assert match_name("Bäckerei Müller GmbH") == match_name("Baeckerei Mueller")
    # Latin letters without a combining mark to strip: Turkish ı, Polish ł, Nordic ø.
    for spelling, plain in (("Yılmaz", "yilmaz"), ("Łukasz", "lukasz"), ("Søren", "soren")):
        assert plain in index_terms(spelling) and query_terms(plain) == query_terms(spelling)
    assert "ahornstrasse" in index_terms("Ahornstr 5")  # "Str" without its dot


def test_umlauts_case_and_transliteration(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    muller = make_org(name=f"Fleischerei Müller {token}")
    mueller = make_org(name=f"Mueller Elektro {token}")
    for query in (f"muller {token}", f"mueller {token}", f"MÜLLER {token}", f"Müll {token}"):
        found = _search(contacts_client, coordinator, query)
        assert muller["id"] in found, query
        assert mueller["id"] in found, query


def test_gross_klein_finds_the_district_and_names(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    in_district = make_org(name=f"Kiosk {token}", district="Groß Klein")
    elsewhere = make_org(name=f"Kiosk {token}", district="Schmarl")
    found = _search(contacts_client, coordinator, f"gross klein {token}")
    assert in_district["id"] in found
    assert elsewhere["id"] not in found


def test_street_abbreviation_both_ways(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    long_form = make_org(name=f"Laden {token}", street="Ratzeburger Straße", house_number="7")
    short_form = make_org(name=f"Studio {token}", street="Ratzeburger Str.", house_number="9")
    for query in ("Ratzeburger Str.", "ratzeburger strasse", "Ratzeburger Straße", "ratzeb str"):
        found = _search(contacts_client, coordinator, f"{query} {token}")
        assert {long_form["id"], short_form["id"]} <= set(found), query
    compound = make_org(name=f"Café {token}", street="Hauptstraße")
    assert compound["id"] in _search(contacts_client, coordinator, f"Hauptstr. {token}")
    assert compound["id"] in _search(contacts_client, coordinator, f"haupt str {token}")


def test_prefixes_sector_tags_and_people(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_person: Maker
) -> None:
    token = suffix()
    org = make_org(
        name=f"Zweirad Jörgensen {token}", sector="Fahrradhandel", tags=[f"radwerk{token}"]
    )
    assert org["id"] in _search(contacts_client, coordinator, f"zwei {token}")  # type-ahead
    assert org["id"] in _search(contacts_client, coordinator, f"fahrrad {token}")
    assert org["id"] in _search(contacts_client, coordinator, f"radwerk{token[:4]}")
    person = make_person(
        first_name="Søren",
        last_name=f"Weißgerber{token}",
        roles=[role(org, "owner")],
    )
    found = _search(contacts_client, coordinator, f"weissgerber{token}")
    assert person["id"] in found  # the person
    assert org["id"] in found  # and the organisation they own
    # A person archived (left the company) no longer finds it by their name; restored, again.
    for archived, expected in ((True, False), (False, True)):
        contacts_client.post(
            f"/api/v1/people/{person['id']}/archive",
            json={"archived": archived},
            headers=coordinator,
        )
        found = _search(contacts_client, coordinator, f"weissgerber{token}")
        assert (org["id"] in found) is expected
    archived = contacts_client.post(
        f"/api/v1/organisations/{org['id']}/archive", json={"archived": True}, headers=coordinator
    )
    assert archived.status_code == 200
    assert org["id"] not in _search(contacts_client, coordinator, f"zweirad {token}")


def test_tokens_that_look_like_numbers(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org(name="Halle 1e5abc 18109")
    for query in ("1e5abc", "1e5", "18109"):
        assert org["id"] in _search(contacts_client, coordinator, query), query


def test_ranking_puts_name_matches_first(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    token = suffix()
    by_street = make_org(name=f"Imbiss {token}", street=f"Bäckergang{token}")
    by_name = make_org(name=f"Bäckergang{token} Backwaren")
    found = _search(contacts_client, coordinator, f"backergang{token}")
    assert found[:2] == [by_name["id"], by_street["id"]]


def test_a_broad_word_ranks_names_first_each_record_once(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """More matches than are ranked (search.CANDIDATES, or the page if longer): the street
    matches come from the first pages of the table (the probe), the name matches from the
    index; none twice, none archived."""
    token = suffix()
    by_name = [make_org(name=f"Ufergasse{token} Laden {n}") for n in range(3)]
    both = make_org(name=f"Ufergasse{token} Eck", street=f"Ufergasse{token}")
    many = max(100, CANDIDATES) + 10  # more than the longest page and than the candidates
    by_street = [make_org(name=f"Kiosk {n}", street=f"Ufergasse{token}") for n in range(many)]
    gone = make_org(name=f"Ufergasse{token} Alt")
    archived = contacts_client.post(
        f"/api/v1/organisations/{gone['id']}/archive", json={"archived": True}, headers=coordinator
    )
    assert archived.status_code == 200
    named = {both["id"], *(org["id"] for org in by_name)}
    streets = {org["id"] for org in by_street}
    for limit in (20, 100):
        response = contacts_client.get(
            "/api/v1/search",
            query_string={"q": f"ufergasse{token}", "limit": limit},
            headers=coordinator,
        )
        found = [hit["id"] for hit in response.get_json()["items"]]
        assert len(found) == len(set(found)) == limit
        assert set(found[:4]) == named
        assert set(found[4:]) <= streets
        assert gone["id"] not in found


def test_empty_or_missing_query_is_422(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    assert contacts_client.get("/api/v1/search", headers=coordinator).status_code == 422
    assert contacts_client.get("/api/v1/search?q=", headers=coordinator).status_code == 422
    only_punctuation = contacts_client.get("/api/v1/search?q=%27%26%21", headers=coordinator)
    assert only_punctuation.status_code == 200
    assert only_punctuation.get_json()["items"] == []
