"""vCards 4.0: what an organisation's card carries, and the people's export as strict as
the organisations'."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import vobject
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from services.contacts.models import Organisation
from shared.db import get_database

from .conftest import Maker, suffix
from .test_export import _strict_vcard_lines
from .test_import import _commit, _upload


def _rev(updated_at: str) -> str:
    return datetime.fromisoformat(updated_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def test_an_organisations_card_carries_email_phone_url_categories_geo_and_rev(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"vcf{suffix()}"
    org = make_org(
        name=f"Fischräucherei Warnemünde {tag}",
        email=f"raeucherei-{tag}@example.org",
        phone="+49 381 5192",
        website="https://raeucherei.example/öffnungszeiten",
        tags=[tag, "Gastronomie"],
        latitude=54.1789,
        longitude=12.0861,
    )
    # Created a day ago, changed now: REV (to the second) is the change's time.
    with get_database(contacts_app).session() as session:
        session.execute(
            update(Organisation)
            .where(Organisation.id == uuid.UUID(org["id"]))
            .values(created_at=Organisation.created_at - timedelta(days=1))
        )
        session.commit()
    changed = contacts_client.patch(
        f"/api/v1/organisations/{org['id']}", json={"sector": "Fischhandel"}, headers=coordinator
    ).get_json()

    response = contacts_client.get(f"/api/v1/organisations/{org['id']}/vcard", headers=coordinator)
    unfolded = _strict_vcard_lines(response.get_data())
    card = vobject.readOne(response.get_data(as_text=True))
    assert card.email.value == f"raeucherei-{tag}@example.org"
    assert card.tel.value == "+49 381 5192"
    assert card.tel.params["TYPE"] == ["work"]
    assert "\r\nURL:https://raeucherei.example/%C3%B6ffnungszeiten\r\n" in unfolded
    assert card.categories.value == [tag, "Gastronomie"]
    assert card.geo.value == "geo:54.178900,12.086100"
    assert card.rev.value == _rev(changed["updated_at"])  # the last change, not the creation

    # The same card in the export of a filtered set.
    listed = contacts_client.get(
        "/api/v1/organisations/export.vcf", query_string={"tags": tag}, headers=coordinator
    )
    assert _strict_vcard_lines(listed.get_data()) == unfolded

    # Without coordinates, or with only one of them, there is no GEO; nor empty lines.
    bare = make_org(name=f"Ohne Ort {tag}", latitude=54.1)
    text = contacts_client.get(
        f"/api/v1/organisations/{bare['id']}/vcard", headers=coordinator
    ).get_data(as_text=True)
    card = vobject.readOne(text)
    assert {"geo", "email", "tel", "url", "categories"}.isdisjoint(card.contents)


def test_the_people_export_is_as_strict_as_the_organisations(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org(name=f"Gärtnerei Größe {suffix()}")
    # Under 75 characters, over 75 octets: a line that vobject's own folding leaves long.
    notes = "Rückruf über Hintertür — Übergabe täglich außer an Feiertagen: ÄÖÜ"
    assert len(f"NOTE:{notes}") < 75 < len(f"NOTE:{notes}".encode())
    people = [
        {
            "first_name": "Jördis",
            "last_name": "Brüning-Äbelé",
            "email": "joerdis@example.org",
            "phone": "0381 4567",
            "notes": notes,
            "roles": [{"organisation_id": org["id"], "role": "owner"}],
        },
        {
            "first_name": "Ömer",
            "last_name": "Yılmaz, geb. Öztürk",
            "roles": [{"organisation_id": org["id"], "role": "contact_person"}],
        },
    ]
    ids = []
    for body in people:
        created = contacts_client.post("/api/v1/people", json=body, headers=coordinator)
        assert created.status_code == 201, created.get_json()
        ids.append(created.get_json()["id"])

    response = contacts_client.get(
        "/api/v1/people/export.vcf",
        query_string={"organisation_id": org["id"]},
        headers=coordinator,
    )
    assert response.status_code == 200 and response.mimetype == "text/vcard"
    unfolded = _strict_vcard_lines(response.get_data())
    assert "\r\nN:Yılmaz\\, geb. Öztürk;Ömer;;;\r\n" in unfolded
    cards = list(vobject.readComponents(io.StringIO(response.get_data(as_text=True))))
    assert [card.uid.value for card in cards] == [f"urn:uuid:{i}" for i in ids]
    first = cards[0]
    assert (first.kind.value, first.fn.value) == ("individual", "Jördis Brüning-Äbelé")
    assert (first.n.value.family, first.n.value.given) == ("Brüning-Äbelé", "Jördis")
    assert (first.email.value, first.tel.value) == ("joerdis@example.org", "0381 4567")
    assert (first.org.value, first.title.value) == ([org["name"]], "Inhaber:in")
    assert first.note.value == notes
    assert cards[1].title.value == "Ansprechpartner:in"


def test_a_website_with_umlauts_in_its_host_is_an_ascii_uri_in_the_vcard_and_text_in_the_csv(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Maker
) -> None:
    tag = f"idn{suffix()}"
    written = "https://www.bäckerei-müller.de/angebot?sorte=Brötchen#öffnungszeiten"
    org = make_org(name=f"Bäckerei Müller {tag}", website=written, tags=[tag])
    assert org["website"] == written

    # RFC 6350 6.7.8: a URI, ASCII only: the host by IDNA (punycode), the rest
    # percent-encoded as UTF-8.
    response = contacts_client.get(f"/api/v1/organisations/{org['id']}/vcard", headers=coordinator)
    unfolded = _strict_vcard_lines(response.get_data())
    uri = "https://www.xn--bckerei-mller-bfb28a.de/angebot?sorte=Br%C3%B6tchen#%C3%B6ffnungszeiten"
    assert f"\r\nURL:{uri}\r\n" in unfolded
    assert vobject.readOne(response.get_data(as_text=True)).url.value == uri

    # The CSV keeps the text as stored, and reads back as the same record.
    export = contacts_client.get(
        "/api/v1/organisations/export.csv", query_string={"tags": tag}, headers=coordinator
    )
    [row] = csv.DictReader(io.StringIO(export.get_data().decode("utf-8-sig")), delimiter=";")
    assert row["website"] == written
    again = _upload(contacts_client, coordinator, export.get_data()).get_json()
    assert (again["valid_rows"], again["invalid_rows"]) == (1, 0), again["errors"]
    done = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (0, 0, 1)

    # A host stored before IDNA checked hosts (any letters passed), which IDNA refuses: the
    # card is still written, the host percent-encoded (RFC 3986 3.2.2).
    with get_database(contacts_app).session() as session:
        session.execute(
            update(Organisation)
            .where(Organisation.id == uuid.UUID(org["id"]))
            .values(website="https://♥.de/grüße")
        )
        session.commit()
    response = contacts_client.get(f"/api/v1/organisations/{org['id']}/vcard", headers=coordinator)
    assert "\r\nURL:https://%E2%99%A5.de/gr%C3%BC%C3%9Fe\r\n" in _strict_vcard_lines(
        response.get_data()
    )
