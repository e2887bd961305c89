"""Re-importing creates no duplicates: a row matches an organisation by our export's id, by
email, or by folded name and address; a row repeating an earlier one in the same file
creates and changes nothing, also in the file imported again; a matched organisation is
changed only where the row has a different, non-empty value; a person at another company
is the same person by their email only."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from flask.testing import FlaskClient

from .conftest import Maker, suffix
from .test_import import PEOPLE_COUNTS, _commit, _person_by_email, _tagged, _upload

ORGS = "/api/v1/organisations"


def _imported(client: FlaskClient, headers: dict[str, str], content: str) -> dict[str, Any]:
    """Preview and commit a file; the preview's counts, checked against the commit's."""
    preview = _upload(client, headers, content.encode()).get_json()
    assert preview["invalid_rows"] == 0, preview["errors"]
    done = _commit(client, headers, preview["id"], mode="all_or_nothing").get_json()
    assert done["status"] == "committed", done
    counts = ("created_count", "updated_count", "skipped_count", *PEOPLE_COUNTS)
    assert [done[key] for key in counts] == [preview[key] for key in counts]
    return dict(done)


def _read(client: FlaskClient, headers: dict[str, str], org: dict[str, Any]) -> dict[str, Any]:
    return dict(client.get(f"{ORGS}/{org['id']}", headers=headers).get_json())


def _register(client: FlaskClient, headers: dict[str, str], tag: str) -> list[dict[str, Any]]:
    """The organisations of a tag with their people, in an order of their ids."""
    orgs = sorted(_tagged(client, headers, tag), key=lambda org: str(org["id"]))
    for org in orgs:
        org["people"].sort(key=lambda role: (role["person_id"], role["role"]))
    return orgs


def test_a_row_matches_by_the_id_of_our_export(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"imp{suffix()}"
    org = make_org(name=f"Kiosk {tag}", street="Warnowallee", postcode="18107", tags=[tag])
    # Name, address and email all differ from the record's: only the id can match it.
    content = (
        "id;name;street;postcode;email;tags\n"
        f"{org['id']};Späti am Markt {tag};Am Markt 1;18106;spaeti-{tag}@example.org;{tag}\n"
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], done["updated_count"]) == (0, 1)
    [only] = _tagged(contacts_client, coordinator, tag)
    assert only["id"] == org["id"]
    assert (only["name"], only["street"], only["house_number"], only["email"]) == (
        f"Späti am Markt {tag}",
        "Am Markt",
        "1",
        f"spaeti-{tag}@example.org",
    )


def test_a_row_matches_by_email(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"imp{suffix()}"
    org = make_org(
        name=f"Friseur Öztürk {tag}",
        street="Stockholmer Straße",
        postcode="18107",
        email=f"salon-{tag}@example.org",
        tags=[tag],
    )
    # Another name, no address; the email written as another program writes it.
    content = (
        f"name;email;city;tags\nSalon Ö. {tag};SALON-{tag.upper()}@Example.org;Rostock;{tag}\n"
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], done["updated_count"]) == (0, 1)
    [only] = _tagged(contacts_client, coordinator, tag)
    assert only["id"] == org["id"]
    assert (only["city"], only["street"]) == ("Rostock", "Stockholmer Straße")


def test_an_organisation_twice_in_one_file_is_created_once(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        "name;street;postcode;email;tags\n"
        f"Bäckerei Müller {tag};Güstrower Straße 3;18109;;{tag}\n"
        f"Baeckerei Mueller {tag} GmbH;Güstrower Str. 3;18109;;{tag}\n"  # the same, folded
        f"Hafenbar {tag};Am Strom 1;18119;bar-{tag}@example.org;{tag}\n"
        f"Hafen-Bar Warnemünde {tag};;;bar-{tag}@example.org;{tag}\n"  # the same email
        f"Bäckerei Müller {tag};Warnowallee 1;18107;;{tag}\n"  # another address: another one
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (3, 0, 2)
    names = sorted(org["name"] for org in _tagged(contacts_client, coordinator, tag))
    assert names == [f"Bäckerei Müller {tag}", f"Bäckerei Müller {tag}", f"Hafenbar {tag}"]


def test_empty_cells_leave_the_fields_of_a_matched_organisation(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"imp{suffix()}"
    kept: dict[str, Any] = {
        "legal_form": "GmbH",
        "sector": "Handel",
        "wz_code": "47.11",
        "city": "Rostock",
        "district": "Lütten Klein",
        "latitude": 54.1234,
        "longitude": 12.0678,
        "website": "https://kiosk.example",
        "email": f"kiosk-{tag}@example.org",
        "phone": "0381 123456",
        "employees": 4,
        "status": "active",
        "needs": ["nachfolge"],
        "tags": [tag, "Späti"],
        "notes": "Öffnet früh",
    }
    address = {"house_number": "3"}
    kiosk = make_org(name=f"Kiosk {tag}", street="Warnowallee", postcode="18107", **address, **kept)
    salon = make_org(
        name=f"Salon {tag}", street="Kolumbusring", postcode="18106", **address, **kept
    )
    columns = ["name", "street", "house_number", "postcode", *kept]
    empty = ";" * (len(kept) - 1)
    content = (
        ";".join(columns)
        + "\n"
        # Every other cell empty: the kiosk gets its new sector and nothing else changes.
        + f"Kiosk {tag};Warnowallee;3;18107;;Getränke{empty[1:]}\n"
        # The salon's row says nothing new: it is left as it is.
        + f"Salon {tag};Kolumbusring;3;18106;{empty}\n"
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (0, 1, 1)

    after = _read(contacts_client, coordinator, kiosk)
    assert after["version"] == 2
    assert {key: after[key] for key in kept} == {**kept, "sector": "Getränke"}
    unchanged = _read(contacts_client, coordinator, salon)
    assert unchanged["version"] == 1
    assert {key: unchanged[key] for key in kept} == kept


def test_across_companies_an_email_tells_a_person_and_a_name_alone_does_not(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Thomas Schmidt without an email at a shipyard and at a harbour bar: two people (one
    name is common), but at one company one person, as before. Anna Müller with her email
    at both: one person with two roles. Bert and Clara Brandt sharing the mailbox of their
    two businesses: two people."""
    tag = f"imp{suffix()}"
    yard, bar = f"Werft {tag};Werftstraße 1", f"Hafenbar {tag};Am Strom 2"
    anna, brandt = f"anna-{tag}@mueller.example", f"info-{tag}@brandt.example"
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail;Kategorien\n"
        f"{yard};Thomas;Schmidt;;{tag}\n"
        f"{bar};Thomas;Schmidt;;{tag}\n"
        f"{yard};Thomas;Schmidt;;{tag}\n"
        f"{yard};Anna;Müller;{anna};{tag}\n"
        f"{bar};Anna;Müller;{anna};{tag}\n"
        f"{yard};Bert;Brandt;{brandt};{tag}\n"
        f"{bar};Clara;Brandt;{brandt};{tag}\n"
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], *(done[key] for key in PEOPLE_COUNTS)) == (2, 5, 1)
    orgs = {org["name"]: org for org in _tagged(contacts_client, coordinator, tag)}
    assert {
        name: sorted(p["person_name"] for p in org["people"]) for name, org in orgs.items()
    } == {
        f"Werft {tag}": ["Anna Müller", "Bert Brandt", "Thomas Schmidt"],
        f"Hafenbar {tag}": ["Anna Müller", "Clara Brandt", "Thomas Schmidt"],
    }
    thomas = {
        p["person_id"]
        for org in orgs.values()
        for p in org["people"]
        if p["person_name"] == "Thomas Schmidt"
    }
    assert len(thomas) == 2
    assert len(_person_by_email(contacts_client, coordinator, anna)) == 1
    assert len(_person_by_email(contacts_client, coordinator, brandt)) == 2

    again = _imported(contacts_client, coordinator, content)
    assert (again["created_count"], *(again[key] for key in PEOPLE_COUNTS)) == (0, 0, 0)
    orgs = {org["name"]: org for org in _tagged(contacts_client, coordinator, tag)}
    assert [len(org["people"]) for org in orgs.values()] == [3, 3]


def _imported_twice(
    client: FlaskClient, headers: dict[str, str], content: str, tag: str
) -> dict[str, Any]:
    """Import a file, then again: the second import creates, changes and links nothing, and
    the tag's organisations and people are as the first left them. The first's result."""
    done = _imported(client, headers, content)
    first = _register(client, headers, tag)
    again = _imported(client, headers, content)
    assert [again[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)] == [0] * 4
    assert _register(client, headers, tag) == first
    return done


def test_companies_sharing_a_mailbox_are_found_again_as_the_first_import_wrote_them(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Two rows of companies without a person, with one email (a mailbox they share), are
    one organisation, the first row's: the second repeats it. Imported again, the second
    row repeats it still, instead of matching it by the email and renaming it."""
    tag = f"imp{suffix()}"
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Werft {tag};Werftstraße 1;;;info-{tag}@hafen.example;{tag}\n"
        f"Hafenbar {tag};Am Strom 2;;;info-{tag}@hafen.example;{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert (done["created_count"], done["skipped_count"]) == (1, 1)
    orgs = _register(contacts_client, coordinator, tag)
    assert [(org["name"], org["street"]) for org in orgs] == [(f"Werft {tag}", "Werftstraße")]


def test_a_contact_named_by_the_last_name_alone_is_found_once_a_row_gave_the_first_name(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A later row gives Brandt of the first rows their first name (Bert: the same email,
    at a second address of the company); imported again, the row naming Brandt alone and
    without an email finds Bert Brandt at the company, instead of adding a second Brandt."""
    tag = f"imp{suffix()}"
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Werft {tag};;;Brandt;b-{tag}@werft.example;{tag}\n"
        f"Werft {tag};;;Brandt;;{tag}\n"
        f"Werft {tag};Am Strom 3;Bert;Brandt;b-{tag}@werft.example;{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert [done[key] for key in PEOPLE_COUNTS] == [1, 1]


def test_a_contact_with_a_first_name_is_not_a_namesake_without_one(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Bert Brandt, without an email, is not the Brandt of the company's mailbox, whom a
    row of another company names Clara: two people, and again none added."""
    tag = f"imp{suffix()}"
    content = (
        "name;street;first_name;last_name;email;tags\n"
        f"Werft {tag};Am Strom 3;;Brandt;info-{tag}@werft.example;{tag}\n"
        f"Werft {tag};Am Strom 3;Bert;Brandt;;{tag}\n"
        f"Café {tag};Am Strom 3;Clara;Brandt;info-{tag}@werft.example;{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert [done[key] for key in PEOPLE_COUNTS] == [2, 1]


@pytest.mark.parametrize("moved", [False, True], ids=["new mailbox", "moved"])
def test_a_company_named_where_the_file_no_longer_has_it_is_a_second_one(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker, moved: bool
) -> None:
    """The bakery and the shipyard share a mailbox (info@) at Werftstraße 1. A file gives
    the bakery a new mailbox (post@) and names it at Am Strom 3 with info@; or it moves the
    bakery to Am Strom 3 (found by info@) and names it at Werftstraße 1 with post@. The
    second row would not find the bakery once the first has changed it, so it is a second
    bakery (a branch), created by the first import rather than by the second; and not a new
    name for the shipyard."""
    tag = f"imp{suffix()}"
    old, new = f"info-{tag}@hafen.example", f"post-{tag}@hafen.example"
    at = {"street": "Werftstraße", "house_number": "1", "email": old, "tags": [tag]}
    bakery = make_org(name=f"Bäckerei Müller {tag}", **at)
    shipyard = make_org(name=f"Werft Nord {tag}", **at)
    rows = [f"Werftstraße 1;{new}", f"Am Strom 3;{old}"]
    content = "name;street;email;tags\n" + "".join(
        f"Bäckerei Müller {tag};{row};{tag}\n" for row in (rows[::-1] if moved else rows)
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert (done["created_count"], done["updated_count"]) == (1, 1)
    kept = _read(contacts_client, coordinator, shipyard)
    assert (kept["name"], kept["street"], kept["email"]) == (shipyard["name"], "Werftstraße", old)
    changed = _read(contacts_client, coordinator, bakery)
    assert (changed["street"], changed["email"]) == (
        ("Am Strom", old) if moved else ("Werftstraße", new)
    )
    bakeries = sorted(
        (o["street"], o["email"])
        for o in _register(contacts_client, coordinator, tag)
        if o["id"] != shipyard["id"]
    )
    assert bakeries == [("Am Strom", old), ("Werftstraße", new)]


def test_a_company_row_with_the_mailbox_a_later_contact_gives_its_company_is_its_own(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """The café's company row finds only the shipyard by the mailbox they share, after a
    row naming the café; a later contact's row creates the café at Am Strom 3 with that
    mailbox. Imported again, the company row would find that café by the mailbox and write
    its phone over the contact's: so it is a café of its own from the first import."""
    tag = f"imp{suffix()}"
    box = f"kontakt-{tag}@hafen.example"
    shipyard = make_org(name=f"Werft Nord {tag}", street="Am Strom", house_number="3", email=box)
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Telefon geschäftlich;Kategorien\n"
        f"Café Anker {tag};Werftstraße 1;Clara;Brandt;;0381 222;{tag}\n"
        f"Café Anker {tag};;;;{box};0381 222;{tag}\n"
        f"Café Anker {tag};Am Strom 3;;Brandt;{box};0381 111;{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert done["created_count"] == 3
    kept = _read(contacts_client, coordinator, shipyard)
    assert (kept["name"], kept["email"]) == (shipyard["name"], box)


def test_a_contact_at_the_address_of_a_company_row_repeating_its_name_joins_that_company(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """The bakery's company row at Am Strom 3 finds only the harbour bar by the mailbox
    they share, and repeats the bakery of the row before it. Clara Brandt's row, at the
    bakery's Am Strom 3, joins that bakery: not the shipyard that has her email, which the
    file imported again would move her from."""
    tag = f"imp{suffix()}"
    box, info = f"kontakt-{tag}@hafen.example", f"info-{tag}@werft.example"
    make_org(name=f"Hafenbar {tag}", email=box)
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Werft Nord {tag};Werftstraße 1;;;{info};{tag}\n"
        f"Bäckerei {tag};;Anna;Alt;{box};{tag}\n"
        f"Bäckerei {tag};Am Strom 3;;;{box};{tag}\n"
        f"Bäckerei {tag};Am Strom 3;Clara;Brandt;{info};{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert [done[key] for key in ("created_count", *PEOPLE_COUNTS)] == [2, 2, 0]
    people = {
        org["name"]: sorted(role["person_name"] for role in org["people"])
        for org in _register(contacts_client, coordinator, tag)
    }
    assert people == {f"Werft Nord {tag}": [], f"Bäckerei {tag}": ["Anna Alt", "Clara Brandt"]}


def test_a_contact_where_an_earlier_row_renames_a_company_joins_it(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """The café at Werftstraße 1 is now the harbour bar: a company row finds it by its
    mailbox and renames it. A. Alt's row names the harbour bar at Werftstr. 1, which nothing
    was called before the file: it is the renamed café, as the file imported again finds
    it, and no second harbour bar."""
    tag = f"imp{suffix()}"
    box = f"post-{tag}@hafen.example"
    cafe = make_org(
        name=f"Café Anker {tag}", street="Werftstraße", house_number="1", email=box, tags=[tag]
    )
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Hafenbar {tag};;;;{box};{tag}\n"
        f"Hafenbar {tag};Werftstr. 1;A.;Alt;{box};{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert [done[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)] == [
        0, 1, 1, 0,
    ]  # fmt: skip
    [org] = _register(contacts_client, coordinator, tag)
    assert (org["id"], org["name"], org["street"]) == (cafe["id"], f"Hafenbar {tag}", "Werftstraße")
    assert [role["person_name"] for role in org["people"]] == ["A. Alt"]


def test_rows_of_our_export_are_no_repeats_of_each_other(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    """Two organisations of one name, address and mailbox (not merged yet): the rows of our
    export, found by their ids, each change their own."""
    tag = f"imp{suffix()}"
    same = {"name": f"Kiosk {tag}", "street": "Warnowallee", "house_number": "3"}
    email = f"kiosk-{tag}@example.org"
    first, second = (make_org(**same, email=email, tags=[tag]) for _ in range(2))
    content = "id;name;street;email;sector;tags\n" + "".join(
        f"{org['id']};Kiosk {tag};Warnowallee 3;{email};{sector};{tag}\n"
        for org, sector in ((first, "Handel"), (second, "Getränke"))
    )
    done = _imported(contacts_client, coordinator, content)
    assert (done["created_count"], done["updated_count"]) == (0, 2)
    assert [_read(contacts_client, coordinator, org)["sector"] for org in (first, second)] == [
        "Handel",
        "Getränke",
    ]


def test_rows_finding_one_organisation_by_two_keys_change_it_once(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A contact's row finds the shipyard by its name and address, a later company row by
    the mailbox they share (another address: the shipyard's second gate): the first row
    changes it, the second repeats it, instead of moving it to its address (the file
    imported again would then find no shipyard at the contact's address, and create one)."""
    tag = f"imp{suffix()}"
    info = f"info-{tag}@werft.example"
    _imported(
        contacts_client,
        coordinator,
        f"name;street;email;tags\nWerft {tag};Werftstraße 1;{info};{tag}\n",
    )
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Werft {tag};Werftstraße 1;Anna;Alt;anna-{tag}@werft.example;{tag}\n"
        f"Werft {tag};Am Strom 3;;;{info};{tag}\n"
    )
    done = _imported(contacts_client, coordinator, content)
    assert [done[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)] == [0, 0, 1, 0]
    first = _register(contacts_client, coordinator, tag)
    [org] = first
    assert (org["street"], org["email"], [p["person_name"] for p in org["people"]]) == (
        "Werftstraße",
        info,
        ["Anna Alt"],
    )

    again = _imported(contacts_client, coordinator, content)
    assert [again[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)] == [0] * 4
    assert _register(contacts_client, coordinator, tag) == first


def test_a_company_with_the_mailbox_of_one_the_file_names_is_another_company(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """The bakery of the register has the mailbox post@; a file gives the bakery another
    email and names a harbour bar with post@. The bar's row does not take the bakery by
    its old mailbox (renaming it): it is created, and the file imported again finds both
    as the first import left them."""
    tag = f"imp{suffix()}"
    post = f"post-{tag}@hafen.example"
    _imported(
        contacts_client,
        coordinator,
        f"name;street;email;tags\nBäckerei {tag};Am Strom 3;{post};{tag}\n",
    )
    content = (
        "name;street;email;tags\n"
        f"Bäckerei {tag};Am Strom 3;info-{tag}@baeckerei.example;{tag}\n"
        f"Hafenbar {tag};Am Strom 3;{post};{tag}\n"
    )
    done = _imported_twice(contacts_client, coordinator, content, tag)
    assert (done["created_count"], done["updated_count"]) == (1, 1)
    orgs = _register(contacts_client, coordinator, tag)
    assert sorted((org["name"], org["email"]) for org in orgs) == [
        (f"Bäckerei {tag}", f"info-{tag}@baeckerei.example"),
        (f"Hafenbar {tag}", post),
    ]


# Generated files: a few companies whose rows share emails, names (some folding alike) and
# addresses, with and without a person (some by the last name alone: a later row may give
# them their first name).
_NAMES = ("Werft Nord", "Hafenbar", "Bäckerei Müller", "Baeckerei Mueller GmbH", "Café Anker")
_STREETS = ("Werftstraße 1", "Werftstr. 1", "Am Strom 3", "")
_PEOPLE = (("Anna", "Alt"), ("A.", "Alt"), ("Bert", "Brandt"), ("Clara", "Brandt"), ("", "Brandt"))
_PHONES = ("0381 111", "0381 222", "")
_HEADERS = (
    "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Telefon geschäftlich;Kategorien",
    "name;street;first_name;last_name;email;phone;tags",
    "name;street;email;phone;tags",
)


def _generated(seed: int, tag: str) -> str:
    """A file of 5 to 15 rows, the same for a seed."""
    rng = random.Random(seed)
    header = rng.choice(_HEADERS)
    naming = rng.choice((0.0, 0.3, 0.7))  # how many rows name a person
    names = rng.sample(_NAMES, rng.randint(1, 4))
    streets = rng.sample(_STREETS, rng.randint(1, 3))
    boxes = [f"{box}@{tag}.example" for box in ("info", "post", "kontakt")]
    emails = rng.sample([*boxes, ""], rng.randint(1, 3))
    lines = [header]
    for _ in range(rng.randint(5, 15)):
        person = rng.choice(_PEOPLE) if rng.random() < naming else ("", "")
        cells = [f"{rng.choice(names)} {tag}", rng.choice(streets), *person]
        cells += [rng.choice(emails), rng.choice(_PHONES), tag]
        if header == _HEADERS[-1]:
            del cells[2:4]
        lines.append(";".join(cells))
    return "\n".join(lines) + "\n"


def _seeds() -> range:
    """The generated files' seeds: 0 to 29, or the range IMPORT_SEEDS names (``30-2429``:
    a longer sweep, run with ``--timeout 0``)."""
    first, _, last = os.environ.get("IMPORT_SEEDS", "0-29").partition("-")
    return range(int(first), int(last or first) + 1)


def test_a_file_imported_again_changes_nothing(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A second and a third import of a file find what the first wrote and change nothing:
    no organisation or person created or changed, no role given. Over 30 generated files
    (one test, not 30: a test's own setup takes longer than its imports; see _seeds)."""
    for seed in _seeds():
        tag = f"imp{suffix()}"
        content = _generated(seed, tag)
        _imported(contacts_client, coordinator, content)
        first = _register(contacts_client, coordinator, tag)
        for _ in range(2):
            again = _imported(contacts_client, coordinator, content)
            counts = [again[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)]
            assert counts == [0, 0, 0, 0], f"seed {seed}:\n{content}"
            assert _register(contacts_client, coordinator, tag) == first, f"seed {seed}:\n{content}"


def test_a_file_imported_again_over_another_changes_nothing(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """As above, with the register holding another file's organisations and people of the
    same names, mailboxes and addresses: the file imported over them, then again twice,
    changes nothing the second and third time."""
    for seed in _seeds():
        tag = f"imp{suffix()}"
        before, content = _generated(seed, tag), _generated(seed + 1000, tag)
        _imported(contacts_client, coordinator, before)
        _imported(contacts_client, coordinator, content)
        first = _register(contacts_client, coordinator, tag)
        files = f"seed {seed}:\n{before}\n{content}"
        for _ in range(2):
            again = _imported(contacts_client, coordinator, content)
            counts = [again[key] for key in ("created_count", "updated_count", *PEOPLE_COUNTS)]
            assert counts == [0, 0, 0, 0], files
            assert _register(contacts_client, coordinator, tag) == first, files
