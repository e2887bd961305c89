"""CSV import: Outlook exports in German and English, previews, re-imports without
duplicates, invalid rows, malformed files and large files in a worker."""

from __future__ import annotations

import codecs
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.contacts.csvfiles import read_table
from services.contacts.models import Change, Organisation, OutboxEvent
from services.contacts.services import organisations
from shared.db import get_database
from shared.errors import Invalid
from shared.settings import Settings
from shared.testing import auth, wait_until

from .conftest import new_district, new_need, suffix

OUTLOOK_DE = (
    "Anrede;Vorname;Nachname;Firma;Position;Straße geschäftlich;Ort geschäftlich;"
    "Postleitzahl geschäftlich;Telefon geschäftlich;E-Mail-Adresse;Webseite;Kategorien;Notizen"
)
OUTLOOK_EN = (
    "Title,First Name,Last Name,Company,Job Title,Business Street,Business City,"
    "Business Postal Code,Business Phone,E-mail Address,Web Page,Categories,Notes"
)


def _upload(
    client: FlaskClient,
    headers: dict[str, str],
    content: bytes,
    mapping: dict[str, Any] | None = None,
    filename: str = "kontakte.csv",
) -> Any:
    data: dict[str, Any] = {"file": (io.BytesIO(content), filename)}
    if mapping is not None:
        data["mapping"] = json.dumps(mapping)
    return client.post(
        "/api/v1/imports", data=data, headers=headers, content_type="multipart/form-data"
    )


def _commit(client: FlaskClient, headers: dict[str, str], import_id: str, **body: Any) -> Any:
    return client.post(
        f"/api/v1/imports/{import_id}/commit",
        json={"mode": "valid_only", **body},
        headers=headers,
    )


def _tagged(client: FlaskClient, headers: dict[str, str], tag: str) -> list[dict[str, Any]]:
    body = client.get(f"/api/v1/organisations?tags={tag}&per_page=500", headers=headers).get_json()
    return list(body["items"])


def _retire(client: FlaskClient, admin: dict[str, str], district: dict[str, Any]) -> None:
    response = client.patch(
        f"/api/v1/districts/{district['id']}", json={"active": False}, headers=admin
    )
    assert response.status_code == 200


def _outlook(*rows: str) -> bytes:
    """A German Outlook export of these rows, as Outlook writes it (BOM, CRLF)."""
    return ("\r\n".join([OUTLOOK_DE, *rows]) + "\r\n").encode("utf-8-sig")


def _outlook_de(tag: str) -> bytes:
    return _outlook(
        f'Frau;Jördis;Weiß;Blumenhaus Weiß {tag};Inhaberin;"Ratzeburger Straße 12";Rostock;'
        f"18109;0381 4567890;info-{tag}@blumen-weiss.example;https://blumen-weiss.example;"
        f'{tag};"Öffnet um 8 Uhr"',
        f"Herr;Klaus;Müller;Müller & Söhne Kfz GmbH {tag};Geschäftsführer;Gerüstbauerring 3;"
        f"Rostock;18109;0381 111;kontakt-{tag}@mueller-kfz.example;;{tag};",
        f"Herr;Ömer;Yılmaz;Café Bosporus {tag};;Warnowallee 20b;Rostock;18107;;;;{tag};",
    )


def test_outlook_german_export_with_bom_twice_makes_no_duplicates(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = _outlook_de(tag)

    preview = _upload(contacts_client, coordinator, content)
    assert preview.status_code == 201, preview.get_json()
    body = preview.get_json()
    assert body["status"] == "previewed"
    assert (body["encoding"], body["delimiter"], body["warnings"]) == ("utf-8-sig", ";", [])
    assert body["mapping"]["Firma"] == "name"
    assert body["mapping"]["Straße geschäftlich"] == "street"
    assert (body["total_rows"], body["valid_rows"], body["invalid_rows"]) == (3, 3, 0)
    assert body["created_count"] == 3
    assert _tagged(contacts_client, coordinator, tag) == []  # a preview writes nothing

    committed = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing")
    assert committed.status_code == 200, committed.get_json()
    assert committed.get_json()["status"] == "committed"
    assert committed.get_json()["created_count"] == 3
    orgs = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    flowers = orgs[f"Blumenhaus Weiß {tag}"]
    assert (flowers["street"], flowers["house_number"], flowers["postcode"]) == (
        "Ratzeburger Straße",
        "12",
        "18109",
    )
    assert flowers["notes"] == "Öffnet um 8 Uhr"
    assert [(p["person_name"], p["role"]) for p in flowers["people"]] == [("Jördis Weiß", "owner")]
    garage = orgs[f"Müller & Söhne Kfz GmbH {tag}"]
    assert garage["people"][0]["role"] == "managing_director"
    assert orgs[f"Café Bosporus {tag}"]["house_number"] == "20b"

    again = _upload(contacts_client, coordinator, content).get_json()
    assert (again["created_count"], again["updated_count"], again["skipped_count"]) == (0, 0, 3)
    second = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (second["created_count"], second["updated_count"]) == (0, 0)
    assert second["skipped_count"] == 3
    assert len(_tagged(contacts_client, coordinator, tag)) == 3
    people = contacts_client.get(
        f"/api/v1/people?organisation_id={flowers['id']}", headers=coordinator
    ).get_json()
    assert people["total"] == 1

    found = contacts_client.get(
        "/api/v1/search", query_string={"q": f"muller sohne {tag}"}, headers=coordinator
    ).get_json()
    assert garage["id"] in [hit["id"] for hit in found["items"]]


def test_outlook_english_export_in_windows_1252_with_commas(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    lines = [
        OUTLOOK_EN,
        f'Mr.,Jürgen,Größe,"Größe Bau, Inh. J. Größe {tag}",Owner,"Schiffbauerring 5",Rostock,'
        f"18109,+49 381 22,j@groesse-bau.example,,{tag},",
    ]
    content = ("\r\n".join(lines) + "\r\n").encode("cp1252")
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["encoding"], body["delimiter"], body["warnings"]) == ("cp1252", ",", [])
    assert body["valid_rows"] == 1, body["errors"]
    _commit(contacts_client, coordinator, body["id"])
    [org] = _tagged(contacts_client, coordinator, tag)
    assert org["name"] == f"Größe Bau, Inh. J. Größe {tag}"
    assert org["street"] == "Schiffbauerring"


def mixed_encodings(tag: str) -> bytes:
    """A file put together from two exports: UTF-8 lines and Windows-1252 lines (3 and 5;
    line 3 starts a quoted cell that line 4, in UTF-8, ends)."""
    lines = [
        ("name;city;notes;tags", "utf-8"),
        (f'Bäckerei Müller {tag};Rostock;"Öffnet um 6";{tag}', "utf-8"),
        (f'Blumen Größe {tag};Rostock;"Zeile eins: Größe', "cp1252"),
        (f'Zeile zwei: Grüße";{tag}', "utf-8"),
        (f"Kiosk Jürgen {tag};Warnemünde;;{tag}", "cp1252"),
    ]
    return b"\r\n".join(line.encode(encoding) for line, encoding in lines) + b"\r\n"


def test_a_file_of_utf8_and_windows_1252_lines_reads_each_line_in_its_own(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    body = _upload(contacts_client, coordinator, mixed_encodings(tag)).get_json()
    assert body["encoding"] == "utf-8+cp1252"
    assert body["warnings"] == ["Lines 3, 5: not UTF-8, read as Windows-1252; check their umlauts."]
    assert (body["valid_rows"], body["invalid_rows"]) == (3, 0), body["errors"]
    again = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert again["warnings"] == body["warnings"]
    _commit(contacts_client, coordinator, body["id"])
    orgs = {org["name"]: org for org in _tagged(contacts_client, coordinator, tag)}
    assert orgs.keys() == {
        f"Bäckerei Müller {tag}",
        f"Blumen Größe {tag}",
        f"Kiosk Jürgen {tag}",
    }
    assert orgs[f"Bäckerei Müller {tag}"]["notes"] == "Öffnet um 6"
    assert orgs[f"Blumen Größe {tag}"]["notes"] == "Zeile eins: Größe\r\nZeile zwei: Grüße"
    assert orgs[f"Kiosk Jürgen {tag}"]["city"] == "Warnemünde"


@pytest.mark.parametrize("line_break", [b"\r", b"\n", b"\r\n"])
def test_lines_in_two_encodings_are_told_apart_at_every_line_break(line_break: bytes) -> None:
    """A file with a carriage return alone at the end of its lines (Excel for Mac's
    "CSV (Macintosh)") is read line by line too, not as Windows-1252 as a whole."""
    lines = [
        "Firma;Straße".encode(),
        "Bäckerei;Hauptstraße 1".encode(),
        "Größe;Weg 2".encode("cp1252"),
    ]
    table = read_table(line_break.join(lines) + line_break)
    assert table.encoding == "utf-8+cp1252"
    assert table.headers == ["Firma", "Straße"]
    assert table.rows == [(2, ["Bäckerei", "Hauptstraße 1"]), (3, ["Größe", "Weg 2"])]
    assert table.warnings == ("Line 3: not UTF-8, read as Windows-1252; check its umlauts.",)


def test_lines_in_windows_1252_are_named_up_to_ten() -> None:
    lines = [b"name;city", "Bäckerei;Rostock".encode()]
    lines += [f"Größe {number};Rostock".encode("cp1252") for number in range(3, 16)]
    table = read_table(b"\n".join(lines))
    assert table.encoding == "utf-8+cp1252"
    assert table.warnings == (
        "Lines 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 3 more: not UTF-8, read as Windows-1252;"
        " check their umlauts.",
    )
    assert [cells[0] for _, cells in table.rows] == ["Bäckerei"] + [
        f"Größe {number}" for number in range(3, 16)
    ]
    # With a UTF-8 BOM the file says it is UTF-8: a line in Windows-1252 is named even
    # where no other line has an umlaut.
    table = read_table(codecs.BOM_UTF8 + b"name;city\n" + "Größe;Köln\n".encode("cp1252"))
    assert (table.encoding, table.headers, table.rows) == (
        "utf-8-sig+cp1252",
        ["name", "city"],
        [(2, ["Größe", "Köln"])],
    )
    assert table.warnings == ("Line 2: not UTF-8, read as Windows-1252; check its umlauts.",)
    # Windows-1252 throughout (its lines UTF-8 only where they are ASCII): no warning.
    table = read_table("name;city\nGröße;Köln\nKiosk;Rostock\n".encode("cp1252"))
    assert (table.encoding, table.warnings) == ("cp1252", ())
    assert table.rows[0][1] == ["Größe", "Köln"]
    # A line in neither encoding: refused as before.
    with pytest.raises(Invalid):
        read_table("name\nGröße\n".encode() + b"Kiosk \x81\n")


def test_invalid_rows_preview_all_or_nothing_and_error_report(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        "name;email;postcode;kind;district;needs;tags\n"
        f"Gut {tag};gut@example.org;18106;business;Schmarl;Digitalisierung;{tag}\n"
        f"Schlecht {tag};keine-adresse;1810;shop;Atlantis;Zauberei;{tag}\n"
        f";leer@example.org;18106;business;;;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["valid_rows"], body["invalid_rows"]) == (1, 2)
    first = body["errors"][0]
    assert first["line"] == 3
    assert set(first["errors"]) == {"email", "postcode", "kind", "district", "needs"}
    assert body["errors"][1]["line"] == 4 and "name" in body["errors"][1]["errors"]

    refused = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing")
    assert refused.status_code == 422 and "mode" in refused.get_json()["errors"]
    assert _tagged(contacts_client, coordinator, tag) == []

    report = contacts_client.get(f"/api/v1/imports/{body['id']}/errors.csv", headers=coordinator)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    text = report.get_data().decode("utf-8-sig")
    assert text.splitlines()[0] == "name;email;postcode;kind;district;needs;tags;Zeile;Fehler"
    assert f"Schlecht {tag};keine-adresse;1810" in text
    assert "postcode: A German postcode has five digits." in text

    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 1)
    [org] = _tagged(contacts_client, coordinator, tag)
    assert (org["district"], org["needs"]) == ("Schmarl", ["digitalisierung"])
    twice = _commit(contacts_client, coordinator, body["id"])
    assert twice.status_code == 409


def test_user_mapping_for_other_columns(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = f"Kunde,Anschrift,Egal\nEisdiele Venezia {tag},Lütten Klein Allee 4,x\n".encode()
    unmapped = _upload(contacts_client, coordinator, content)
    assert unmapped.status_code == 422 and "mapping" in unmapped.get_json()["errors"]
    body = _upload(
        contacts_client,
        coordinator,
        content,
        mapping={"Kunde": "name", "Anschrift": "street", "Egal": None},
    ).get_json()
    assert body["mapping"] == {"Kunde": "name", "Anschrift": "street"}
    _commit(contacts_client, coordinator, body["id"])
    hits = contacts_client.get(
        "/api/v1/search", query_string={"q": f"venezia {tag}"}, headers=coordinator
    ).get_json()["items"]
    assert hits[0]["detail"] == "Lütten Klein Allee 4"
    wrong = _upload(contacts_client, coordinator, content, mapping={"Kunde": "colour"})
    assert wrong.status_code == 422 and "mapping" in wrong.get_json()["errors"]
    twice = _upload(
        contacts_client, coordinator, content, mapping={"Kunde": "name", "Anschrift": "name"}
    )
    assert twice.status_code == 422
    assert twice.get_json()["errors"]["mapping"] == ["Two columns for one field: name."]


def test_malformed_or_binary_files_leave_nothing_behind(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A refused upload keeps no import: it would hold the file, personal data."""
    from services.contacts.models import Import

    def imports_kept() -> int:
        with get_database(contacts_app).session() as session:
            return session.scalar(select(func.count()).select_from(Import)) or 0

    before = imports_kept()
    tag = f"imp{suffix()}"
    broken = f'name;tags\n"Offen {tag};{tag}\nZu {tag};{tag}\n'.encode()
    response = _upload(contacts_client, coordinator, broken)
    assert response.status_code == 422 and "file" in response.get_json()["errors"]
    assert _upload(contacts_client, coordinator, b"\x89PNG\x00\x00").status_code == 422
    assert _upload(contacts_client, coordinator, b"").status_code == 422
    unknown_column = _upload(contacts_client, coordinator, f"Kunde\nKiosk {tag}\n".encode())
    assert unknown_column.status_code == 422 and "mapping" in unknown_column.get_json()["errors"]
    missing = contacts_client.post(
        "/api/v1/imports", data={}, headers=coordinator, content_type="multipart/form-data"
    )
    assert missing.status_code == 422 and "file" in missing.get_json()["errors"]
    assert imports_kept() == before


def test_oversized_upload_is_413(make_settings: Callable[..., Settings], staff_token: Any) -> None:
    from services.contacts.app import create_app

    app = create_app(make_settings("contacts", max_content_length=2048))
    content = b"name\n" + b"Sehr langer Name\n" * 500
    response = app.test_client().post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(content), "gross.csv")},
        headers=auth(staff_token("coordinator")),
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_large_import_is_checked_and_committed_by_a_worker_with_progress(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    celery_worker_for: Callable[..., Any],
) -> None:
    tag = f"imp{suffix()}"
    rows = [f"Betrieb {i} {tag};Hauptstr. {i};18106;{tag}" for i in range(1200)]
    rows[7] = f"Betrieb 7 {tag};Hauptstr. 7;181;{tag}"  # a postcode of three digits
    content = ("name;street;postcode;tags\n" + "\n".join(rows)).encode()
    uploaded = contacts_client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(content), "gross.csv"), "background": "true"},
        headers=coordinator,
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 202, uploaded.get_json()
    body = uploaded.get_json()
    assert (body["status"], body["total_rows"], body["valid_rows"]) == ("checking", 1200, 0)
    early = _commit(contacts_client, coordinator, body["id"])
    assert early.status_code == 409 and "checked" in early.get_json()["detail"]

    def state(wanted: str) -> Any:
        current = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator)
        return current.get_json() if current.get_json()["status"] == wanted else None

    celery_worker_for("contacts")
    previewed = wait_until(lambda: state("previewed"), timeout=120)
    assert (previewed["valid_rows"], previewed["invalid_rows"]) == (1199, 1)
    assert previewed["errors"][0]["line"] == 9 and "postcode" in previewed["errors"][0]["errors"]
    assert (previewed["created_count"], previewed["processed_rows"]) == (1199, 1200)
    assert _tagged(contacts_client, coordinator, tag) == []  # a preview writes nothing

    queued = _commit(contacts_client, coordinator, body["id"], background=True).get_json()
    assert queued["status"] == "queued"
    done = wait_until(lambda: state("committed"), timeout=120)
    assert (done["created_count"], done["processed_rows"]) == (1199, 1200)
    listed = contacts_client.get(f"/api/v1/organisations?tags={tag}", headers=coordinator)
    assert listed.get_json()["total"] == 1199


def test_row_checks_give_what_the_schema_gives() -> None:
    import marshmallow as ma

    from services.contacts.services.imports import _Loader, _row_schema

    fields = ("name", "email", "postcode", "website", "phone", "employees", "latitude", "tags")
    mapping = {field: field for field in (*fields, "wz_code", "status")}
    rows: list[dict[str, Any]] = [
        {"kind": "business", "name": "Bäckerei Müller", "email": "info@example.org"},
        {"kind": "shop", "name": " ", "email": "keine", "postcode": "1810", "website": "ftp://x"},
        {"kind": "business", "phone": "abc", "employees": "viele", "latitude": "91"},
        {"kind": "business", "name": "x" * 301, "tags": ["gut", "y" * 81], "status": "wach"},
        {"kind": "business", "name": "Laden", "wz_code": "47.11", "latitude": "54.1"},
    ]
    loader = _Loader(mapping)
    schema = _row_schema(mapping)
    for values in rows * 2:  # the second time from the loader's memory
        errors: dict[str, Any] = {}
        loaded = loader.load(values, errors)
        try:
            expected, expected_errors = schema.load(values), {}
        except ma.ValidationError as exc:
            expected, expected_errors = exc.valid_data, exc.normalized_messages()
        assert errors == expected_errors, values
        if not errors:  # (an invalid row is not written; its valid fields do not matter)
            assert loaded == expected, values


def test_commit_checks_the_file_again_when_its_checked_rows_are_gone(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    import uuid

    from sqlalchemy import delete

    from services.contacts.models import ImportRow
    from shared.db import get_database

    tag = f"imp{suffix()}"
    content = f"name;street;tags\nEins {tag};Hauptstr. 1;{tag}\nZwei {tag};;{tag}\n".encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["valid_rows"], body["created_count"]) == (2, 2)
    # import_rows is unlogged: a database crash empties it between preview and commit.
    with get_database(contacts_app).session() as session:
        session.execute(delete(ImportRow).where(ImportRow.import_id == uuid.UUID(body["id"])))
        session.commit()
    done = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing").get_json()
    assert (done["status"], done["created_count"]) == ("committed", 2)
    names = sorted(org["name"] for org in _tagged(contacts_client, coordinator, tag))
    assert names == [f"Eins {tag}", f"Zwei {tag}"]


def test_reimport_changes_only_the_rows_that_differ(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    header = "name;street;postcode;district;needs;sector;tags\n"
    first = (
        f"Kiosk {tag};Warnowallee 3;18107;Lütten Klein;Digitalisierung;Handel;{tag}\n"
        f"Salon {tag};Kolumbusring 9;18106;Schmarl;;Friseur;{tag}\n"
    )
    body = _upload(contacts_client, coordinator, (header + first).encode()).get_json()
    _commit(contacts_client, coordinator, body["id"])
    orgs = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}

    changed = first.replace(";Friseur;", ";Kosmetik;")
    again = _upload(contacts_client, coordinator, (header + changed).encode()).get_json()
    # The preview says what the commit will do: one row changes, one changes nothing.
    assert (again["created_count"], again["updated_count"], again["skipped_count"]) == (0, 1, 1)
    done = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (done["created_count"], done["updated_count"], done["skipped_count"]) == (0, 1, 1)
    after = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    kiosk, salon = after[f"Kiosk {tag}"], after[f"Salon {tag}"]
    assert (kiosk["version"], kiosk["needs"]) == (1, ["digitalisierung"])
    assert (salon["version"], salon["sector"]) == (2, "Kosmetik")
    history = contacts_client.get(
        f"/api/v1/organisations/{salon['id']}/history", headers=coordinator
    ).get_json()
    assert [entry["action"] for entry in history] == ["created", "updated"]
    assert history[1]["after"] == {"sector": "Kosmetik"}
    assert orgs[f"Kiosk {tag}"]["updated_at"] == kiosk["updated_at"]


def test_imported_organisations_have_the_history_and_events_of_a_single_create(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """The commit writes new organisations with SQL; their history entry and their event
    are what the use case writes for one created through the API."""
    tag = f"imp{suffix()}"
    header = "name;legal_form;street;postcode;district;needs;tags;notes;employees\n"
    content = (
        f"Kiosk {tag};GmbH;Warnowallee 3;18107;Lütten Klein;Digitalisierung, Nachfolge;"
        f"{tag}, Späti;„Öffnet früh“;4\n"
        f"Salon {tag};;Kolumbusring 9;18106;;;{tag};;\n"
    )
    body = _upload(contacts_client, coordinator, (header + content).encode()).get_json()
    done = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing").get_json()
    assert done["created_count"] == 2

    with get_database(contacts_app).session() as session:
        created = session.scalars(
            select(Organisation)
            .where(Organisation.tags.contains([tag]))
            .order_by(Organisation.name)
        ).all()
        assert len(created) == 2
        for org in created:
            changes = session.scalars(
                select(Change).where(
                    Change.entity_type == "organisation", Change.entity_id == str(org.id)
                )
            ).all()
            assert [(c.action, c.before, c.after) for c in changes] == [
                ("created", None, organisations.snapshot(org))
            ]
            events = session.scalars(
                select(OutboxEvent).where(OutboxEvent.aggregate_id == str(org.id))
            ).all()
            assert [(e.type, e.version, e.payload) for e in events] == [
                ("contacts.organisation.created", 1, organisations.event_data(org))
            ]
        kiosk = organisations.snapshot(created[0])
        assert (kiosk["district"], kiosk["needs"], kiosk["notes"]) == (
            "Lütten Klein",
            ["digitalisierung", "nachfolge"],
            "„Öffnet früh“",
        )


def test_uploads_are_deleted_after_the_retention(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """An upload holds personal data: after the retention the import, its file and its
    checked rows are gone; what was imported stays in the register."""
    from datetime import timedelta

    from services.contacts.models import Import, ImportRow
    from services.contacts.services import imports

    tag = f"imp{suffix()}"
    old = _upload(contacts_client, coordinator, _outlook_de(tag)).get_json()
    assert _commit(contacts_client, coordinator, old["id"]).status_code == 200
    pending = _upload(contacts_client, coordinator, _outlook_de(f"{tag}x")).get_json()
    recent = _upload(contacts_client, coordinator, _outlook_de(f"{tag}y")).get_json()

    with get_database(contacts_app).session() as session:
        for import_id, days in ((old["id"], 31), (pending["id"], 40)):
            session.get(Import, uuid.UUID(import_id)).created_at -= timedelta(days=days)  # type: ignore[union-attr]
        session.commit()
        staged = select(func.count()).select_from(ImportRow)
        assert session.scalar(staged.where(ImportRow.import_id == uuid.UUID(pending["id"]))) == 3
        assert imports.purge_imports(session) >= 2

        for gone in (old["id"], pending["id"]):
            assert (
                contacts_client.get(f"/api/v1/imports/{gone}", headers=coordinator).status_code
                == 404
            )
        assert session.scalar(staged.where(ImportRow.import_id == uuid.UUID(pending["id"]))) == 0
    still = contacts_client.get(f"/api/v1/imports/{recent['id']}", headers=coordinator)
    assert still.status_code == 200 and still.get_json()["status"] == "previewed"
    assert len(_tagged(contacts_client, coordinator, tag)) == 3


def test_a_check_queued_for_an_import_deleted_meanwhile_does_nothing(
    contacts_app: Flask, caplog: Any
) -> None:
    from services.contacts import tasks

    with contacts_app.app_context():
        tasks.check_import.run(str(uuid.uuid4()))
    assert "No such import." in caplog.text


def test_every_contact_of_an_outlook_export_joins_their_company(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Outlook exports a row per person: the second person at a company is a row that
    repeats the first one's company; it creates no organisation, but the person is added."""
    tag = f"imp{suffix()}"
    company = f"Hafenbau {tag};Inhaberin;Werftstraße 1;Rostock;18107;"
    content = _outlook(
        f"Frau;Anna;Albers;{company};info@{tag}.example;;{tag};",
        f"Herr;Bert;Brandt;{company};;;{tag};",
        f"Herr;Cem;Çelik;{company};bert@{tag}.example;;{tag};",
    )
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["valid_rows"], body["created_count"], body["skipped_count"]) == (3, 1, 2)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["created_count"], done["skipped_count"]) == (1, 2)
    [org] = _tagged(contacts_client, coordinator, tag)
    assert sorted(p["person_name"] for p in org["people"]) == [
        "Anna Albers",
        "Bert Brandt",
        "Cem Çelik",
    ]

    again = _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    ).get_json()
    assert (again["created_count"], again["updated_count"]) == (0, 0)
    [org] = _tagged(contacts_client, coordinator, tag)
    assert len(org["people"]) == 3  # nobody twice


def test_a_file_without_kinds_leaves_the_kind_of_what_it_matches(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Any
) -> None:
    tag = f"imp{suffix()}"
    landlord = make_org(name=f"WIRO Wohnen {tag}", kind="landlord", email=f"{tag}@wiro.example")
    content = f"Firma;E-Mail;Ort;Kategorien\nWIRO Wohnen {tag};{tag}@wiro.example;Rostock;{tag}\n"
    body = _upload(contacts_client, coordinator, content.encode()).get_json()
    assert (body["created_count"], body["updated_count"]) == (0, 1)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert done["updated_count"] == 1
    org = contacts_client.get(f"/api/v1/organisations/{landlord['id']}", headers=coordinator)
    assert (org.get_json()["kind"], org.get_json()["city"]) == ("landlord", "Rostock")
    new = f"name;tags\nNeu {tag};{tag}\n".encode()
    _commit(
        contacts_client, coordinator, _upload(contacts_client, coordinator, new).get_json()["id"]
    )
    kinds = {o["name"]: o["kind"] for o in _tagged(contacts_client, coordinator, tag)}
    assert kinds[f"Neu {tag}"] == "business"  # what a row without a kind creates


def test_a_commit_task_delivered_again_changes_nothing(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A broker delivers a task again (acks_late): the committed import stays committed, and
    edits made since are kept."""
    from services.contacts import tasks

    tag = f"imp{suffix()}"
    content = f"name;phone;tags\nKiosk {tag};0381 111;{tag}\n".encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    queued = _commit(contacts_client, coordinator, body["id"], background=True).get_json()
    assert queued["status"] == "queued"
    with contacts_app.app_context():
        tasks.run_import.run(body["id"])
    [org] = _tagged(contacts_client, coordinator, tag)
    edited = contacts_client.patch(
        f"/api/v1/organisations/{org['id']}", json={"phone": "0381 222"}, headers=coordinator
    )
    assert edited.status_code == 200
    with contacts_app.app_context():
        tasks.run_import.run(body["id"])
    record = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert (record["status"], record["created_count"]) == ("committed", 1)
    [org] = _tagged(contacts_client, coordinator, tag)
    assert (org["phone"], org["version"]) == ("0381 222", 2)


def test_imports_committed_at_once_create_each_organisation_once(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    import threading

    from services.contacts.services import imports

    tag = f"imp{suffix()}"
    rows = "".join(f"Betrieb {i} {tag};Hauptstr. {i};{tag}\n" for i in range(50))
    content = f"name;street;tags\n{rows}".encode()
    ids = [_upload(contacts_client, coordinator, content).get_json()["id"] for _ in range(2)]
    database = get_database(contacts_app)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def commit(import_id: str) -> None:
        with database.session() as session:
            barrier.wait()
            record = imports.commit_import(
                session,
                uuid.UUID(import_id),
                mode="valid_only",
                actor="test",
                background=False,
                enqueue=lambda _id: None,
            )
            results.append((record.created_count, record.skipped_count))

    threads = [threading.Thread(target=commit, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [(0, 50), (50, 0)]
    assert len(_tagged(contacts_client, coordinator, tag)) == 50


def test_vocabulary_named_exactly_wins_over_one_that_folds_alike(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Entries that differ only in case or umlaut spelling (kept from before such names were
    refused): a file naming one exactly gets that one; otherwise the older one."""
    from services.contacts.models import District

    tag = f"imp{suffix()}"
    with get_database(contacts_app).session() as session:
        session.add(District(name=f"Alt-Schmarl {tag}"))
        session.add(District(name=f"ALT-SCHMARL {tag}"))
        session.commit()
    content = (
        "name;district;tags\n"
        f"Eins {tag};Alt-Schmarl {tag};{tag}\n"
        f"Zwei {tag};ALT-SCHMARL {tag};{tag}\n"
        f"Drei {tag};alt-schmarl {tag};{tag}\n"
    ).encode()
    _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    )
    districts = {o["name"]: o["district"] for o in _tagged(contacts_client, coordinator, tag)}
    assert districts == {
        f"Eins {tag}": f"Alt-Schmarl {tag}",
        f"Zwei {tag}": f"ALT-SCHMARL {tag}",
        f"Drei {tag}": f"Alt-Schmarl {tag}",
    }


def test_rows_are_checked_as_the_api_checks_them(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        "Firma;Vorname;Nachname;Mobiltelefon;Ort;Kategorien\n"
        f"Eins {tag};Carl;Gamma;ruf mich an;Rostock;{tag}\n"
        f"Müller; Söhne {tag};;;;Rostock;{tag}\n"
        f"Drei {tag};;;;Rostock;{tag}, {tag},Handel\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    errors = {error["line"]: error["errors"] for error in body["errors"]}
    assert set(errors) == {2, 3}
    assert errors[2] == {"person_phone": ["Not a phone number."]}
    assert list(errors[3]) == ["row"] and "7 cells" in errors[3]["row"][0]
    _commit(contacts_client, coordinator, body["id"])
    [org] = _tagged(contacts_client, coordinator, tag)
    assert org["tags"] == [tag, "Handel"]  # unique, as a single create keeps them


def test_an_import_a_worker_cannot_finish_is_failed_not_left_running(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], caplog: Any
) -> None:
    from sqlalchemy import update

    from services.contacts import tasks
    from services.contacts.models import ImportRow

    tag = f"imp{suffix()}"
    content = f"name;tags\nEins {tag};{tag}\nZwei {tag};{tag}\n".encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    # A checked row the database refuses at the commit (a status no organisation may have).
    with get_database(contacts_app).session() as session:
        session.execute(
            update(ImportRow)
            .where(ImportRow.import_id == uuid.UUID(body["id"]), ImportRow.line == 3)
            .values(status="verloren")
        )
        session.commit()
    _commit(contacts_client, coordinator, body["id"], background=True)
    with contacts_app.app_context():
        tasks.run_import.run(body["id"])
    record = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert record["status"] == "failed"
    assert record["errors"][-1]["errors"] == {
        "import": ["An unexpected error stopped it; try again."]
    }
    assert _tagged(contacts_client, coordinator, tag) == []  # nothing half written
    assert "stopped by an unexpected error" in caplog.text


def test_an_upload_the_broker_cannot_take_is_failed_not_left_checking(
    contacts_app: Flask,
) -> None:
    from services.contacts.models import Import
    from services.contacts.services import imports

    def broker_down(_import_id: str) -> None:
        raise ConnectionError("broker unreachable")

    database = get_database(contacts_app)
    with database.session() as session:
        try:
            imports.preview_import(
                session,
                content=b"name\nEins\n",
                filename="a\x00b.csv",
                mapping=None,
                actor="test",
                background=True,
                enqueue=broker_down,
            )
        except ConnectionError:
            pass
        else:
            raise AssertionError("the broker's error must reach the caller (a 503)")
        record = session.scalars(select(Import).order_by(Import.created_at.desc())).first()
        assert record is not None
        assert (record.status, record.filename) == ("failed", "ab.csv")


def test_a_nul_character_is_refused_in_every_encoding(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    text = f"name;city;tags\r\nKiosk {tag};Rostock;{tag}\r\nSalon\x00 {tag};Rostock;{tag}\r\n"
    for content in (text.encode("utf-16"), text.encode("utf-8"), text.encode("cp1252")):
        response = _upload(contacts_client, coordinator, content)
        assert response.status_code == 422, response.get_json()
        assert "Line 3: a NUL character" in response.get_json()["errors"]["file"][0]
    assert _tagged(contacts_client, coordinator, tag) == []


def test_cells_from_other_programs_street_tags_and_escaped_formulas(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        "name;street;house_number;sector;tags\r\n"
        # A file with a house-number column: a street without number of its own stays whole.
        f"Café Bosporus {tag};Warnowallee 20b;;Gastronomie;{tag}, Handel, Gewerbe\r\n"
        # A spreadsheet's (or another CRM's) escaped formula loses one apostrophe.
        f"'=Kiosk {tag};Kolumbusring;9;'-Einzelhandel-;\"{tag}; Handel, Gewerbe\"\r\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["valid_rows"] == 2, body["errors"]
    _commit(contacts_client, coordinator, body["id"])
    orgs = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    cafe, kiosk = orgs[f"Café Bosporus {tag}"], orgs[f"=Kiosk {tag}"]
    assert (cafe["street"], cafe["house_number"]) == ("Warnowallee 20b", None)
    assert cafe["tags"] == [tag, "Handel", "Gewerbe"]  # commas only: split on commas
    assert (kiosk["street"], kiosk["house_number"]) == ("Kolumbusring", "9")
    assert kiosk["sector"] == "-Einzelhandel-"
    assert kiosk["tags"] == [tag, "Handel, Gewerbe"]  # a ";": split on it alone

    # Without a house-number column the number is still taken off the street.
    single = f"name;street;tags\r\nEck {tag};Warnowallee 20b;{tag}eck\r\n".encode()
    body = _upload(contacts_client, coordinator, single).get_json()
    _commit(contacts_client, coordinator, body["id"])
    [eck] = _tagged(contacts_client, coordinator, f"{tag}eck")
    assert (eck["street"], eck["house_number"]) == ("Warnowallee", "20b")


def test_the_error_report_escapes_formulas_once(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        f'name;postcode;tags\r\n"=HYPERLINK(""https://x.example"") {tag}";1810;{tag}\r\n'
        f"'-Kiosk {tag};123;{tag}\r\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["invalid_rows"] == 2
    report = contacts_client.get(f"/api/v1/imports/{body['id']}/errors.csv", headers=coordinator)
    lines = report.get_data().decode("utf-8-sig").splitlines()
    assert lines[1].startswith(f'"\'=HYPERLINK(""https://x.example"") {tag}";1810;')
    assert lines[2].startswith(f"'-Kiosk {tag};123;")  # escaped as the file had it, once


def test_kinds_and_statuses_in_german(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    content = (
        "Name;Art;Status;Kategorien\n"
        f"WIRO {tag};Wohnungsunternehmen;Aktiv;{tag}\n"
        f"Hausverwaltung Kühn {tag};Vermieterin;Interessent;{tag}\n"
        f"Eiscafé {tag};Gewerbe;weggezogen;{tag}\n"
        f"Verein {tag};landlord;closed;{tag}\n"
        f"Unbekannt {tag};Behörde;aktiv;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert [(error["line"], list(error["errors"])) for error in body["errors"]] == [(6, ["kind"])]
    _commit(contacts_client, coordinator, body["id"])
    found = {
        o["name"]: (o["kind"], o["status"]) for o in _tagged(contacts_client, coordinator, tag)
    }
    assert found == {
        f"WIRO {tag}": ("housing_company", "active"),
        f"Hausverwaltung Kühn {tag}": ("landlord", "prospect"),
        f"Eiscafé {tag}": ("business", "moved_away"),
        f"Verein {tag}": ("landlord", "closed"),
    }


def test_a_district_renamed_between_preview_and_commit_is_checked_again(
    contacts_client: FlaskClient, coordinator: dict[str, str], admin: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    district = new_district(contacts_client, admin, f"Werftquartier {tag}")
    content = (
        f"name;district;tags\nEins {tag};Werftquartier {tag};{tag}\nZwei {tag};Schmarl;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["valid_rows"], body["created_count"]) == (2, 2)
    renamed = contacts_client.patch(
        f"/api/v1/districts/{district['id']}", json={"name": f"Hafenquartier {tag}"}, headers=admin
    )
    assert renamed.status_code == 200
    refused = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing")
    assert refused.status_code == 422  # the file's district is unknown now
    contacts_client.patch(
        f"/api/v1/districts/{district['id']}", json={"name": f"Werftquartier {tag}"}, headers=admin
    )
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["valid_rows"] == 2
    contacts_client.patch(
        f"/api/v1/districts/{district['id']}", json={"name": f"Werftquartier {tag}x"}, headers=admin
    )
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 1)
    assert [e["line"] for e in done["errors"]] == [2] and "district" in done["errors"][0]["errors"]
    [org] = _tagged(contacts_client, coordinator, tag)
    assert (org["name"], org["district"]) == (f"Zwei {tag}", "Schmarl")


def test_a_retired_district_or_need_is_kept_where_it_is_but_not_given_by_a_file(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Any,
) -> None:
    tag = f"imp{suffix()}"
    district = new_district(contacts_client, admin, f"Altquartier {tag}")
    need = new_need(contacts_client, admin, f"Telefonbuch {tag}")
    kept = make_org(
        name=f"Bleibt {tag}",
        district=district["name"],
        needs=[need["key"]],
        email=f"b@{tag}.example",
    )
    other = make_org(name=f"Anders {tag}", district="Schmarl", email=f"a@{tag}.example")
    _retire(contacts_client, admin, district)
    retired = contacts_client.patch(
        f"/api/v1/needs/{need['key']}", json={"active": False}, headers=admin
    )
    assert retired.status_code == 200
    content = (
        "name;email;district;needs;tags\n"
        f"Bleibt {tag};b@{tag}.example;Altquartier {tag};Telefonbuch {tag};{tag}\n"
        f"Anders {tag};a@{tag}.example;Altquartier {tag};;{tag}\n"
        f"Neu {tag};n@{tag}.example;Altquartier {tag};;{tag}\n"
        f"Auch neu {tag};;Schmarl;;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert [(e["line"], list(e["errors"])) for e in body["errors"]] == [
        (3, ["district"]),
        (4, ["district"]),
    ]
    assert "retired" in body["errors"][0]["errors"]["district"][0]
    assert (body["valid_rows"], body["created_count"]) == (2, 1)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 1)
    found = {
        o["name"]: (o["district"], o["needs"]) for o in _tagged(contacts_client, coordinator, tag)
    }
    assert found == {
        f"Bleibt {tag}": (district["name"], [need["key"]]),  # kept where it is
        f"Auch neu {tag}": ("Schmarl", []),
    }
    for org, name in ((kept, district["name"]), (other, "Schmarl")):
        now = contacts_client.get(f"/api/v1/organisations/{org['id']}", headers=coordinator)
        assert now.get_json()["district"] == name
    # A file naming a retired need, and nothing else retired.
    content = f"name;needs;tags\nBedarf {tag};Telefonbuch {tag};{tag}\n".encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert [(e["line"], list(e["errors"])) for e in body["errors"]] == [(2, ["needs"])]
    assert "retired" in body["errors"][0]["errors"]["needs"][0]


def test_the_same_import_committed_twice_at_once_is_written_once(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    import threading

    from services.contacts.services import imports
    from shared.errors import Conflict

    tag = f"imp{suffix()}"
    rows = "".join(f"Betrieb {i} {tag};Hauptstr. {i};{tag}\n" for i in range(200))
    body = _upload(contacts_client, coordinator, f"name;street;tags\n{rows}".encode()).get_json()
    database = get_database(contacts_app)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def commit() -> None:
        with database.session() as session:
            barrier.wait()
            try:
                record = imports.commit_import(
                    session,
                    uuid.UUID(body["id"]),
                    mode="valid_only",
                    actor="test",
                    background=False,
                    enqueue=lambda _id: None,
                )
                results.append((record.status, record.created_count))
            except Conflict as exc:
                results.append(("conflict", exc.detail))

    threads = [threading.Thread(target=commit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [
        ("committed", 200),
        ("conflict", "This import is committed already."),
    ]
    record = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert (record["created_count"], record["skipped_count"]) == (200, 0)
    assert len(_tagged(contacts_client, coordinator, tag)) == 200


def test_a_file_cannot_make_an_owner_of_premises_a_business(
    contacts_client: FlaskClient, coordinator: dict[str, str], landlord: dict[str, Any]
) -> None:
    tag = landlord["tags"][0]
    content = (
        "id;name;kind;tags\n"
        f"{landlord['id']};{landlord['name']};business;{tag}\n"
        f";Neu {tag};business;{tag}\n"
    )
    body = _upload(contacts_client, coordinator, content.encode()).get_json()
    assert [(e["line"], list(e["errors"])) for e in body["errors"]] == [(2, ["kind"])]
    assert "owns premises" in body["errors"][0]["errors"]["kind"][0]
    _commit(contacts_client, coordinator, body["id"])
    now = contacts_client.get(f"/api/v1/organisations/{landlord['id']}", headers=coordinator)
    assert now.get_json()["kind"] == "landlord"


@pytest.fixture
def landlord(make_org: Any, make_premises: Any) -> dict[str, Any]:
    """A landlord owning premises, at Kolumbusring 1 with info@ (its tag is the file's)."""
    tag = f"imp{suffix()}"
    landlord = make_org(
        name=f"Vermietung {tag}",
        kind="landlord",
        street="Kolumbusring",
        house_number="1",
        email=f"info@{tag}.example",
        tags=[tag],
    )
    make_premises(owner_id=landlord["id"])
    return dict(landlord)


def test_a_row_the_file_makes_a_new_business_is_not_refused_for_an_owner_it_shares_a_mailbox_with(
    contacts_client: FlaskClient, coordinator: dict[str, str], landlord: dict[str, Any]
) -> None:
    """The file gives the landlord a mailbox of its own, and the bakery the one it shared
    with the landlord: the bakery is a new business, not the landlord made one."""
    tag = landlord["tags"][0]
    content = (
        "name;street;email;kind;tags\n"
        f"Vermietung {tag};Kolumbusring 1;post@{tag}.example;landlord;{tag}\n"
        f"Bäckerei {tag};Am Strom 3;info@{tag}.example;business;{tag}\n"
    )
    body = _upload(contacts_client, coordinator, content.encode()).get_json()
    assert (body["errors"], body["valid_rows"], body["created_count"]) == ([], 2, 1)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 1)
    kinds = {o["name"]: o["kind"] for o in _tagged(contacts_client, coordinator, tag)}
    assert kinds == {landlord["name"]: "landlord", f"Bäckerei {tag}": "business"}


def test_a_row_the_file_makes_a_new_organisation_is_refused_a_retired_district(
    contacts_client: FlaskClient, coordinator: dict[str, str], admin: dict[str, str], make_org: Any
) -> None:
    """The file gives the shipyard a mailbox of its own, and the bakery the one it shared
    with the shipyard: the new bakery would be given the retired district the shipyard
    keeps."""
    tag = f"imp{suffix()}"
    district = new_district(contacts_client, admin, f"Altquartier {tag}")
    make_org(
        name=f"Werft {tag}",
        street="Werftstraße",
        house_number="1",
        district=district["name"],
        email=f"info@{tag}.example",
    )
    _retire(contacts_client, admin, district)
    content = (
        "name;street;email;district;tags\n"
        f"Werft {tag};Werftstr. 1;post@{tag}.example;;{tag}\n"
        f"Bäckerei {tag};Am Strom 3;info@{tag}.example;Altquartier {tag};{tag}\n"
    )
    body = _upload(contacts_client, coordinator, content.encode()).get_json()
    assert [(e["line"], list(e["errors"])) for e in body["errors"]] == [(3, ["district"])]
    assert "retired" in body["errors"][0]["errors"]["district"][0]
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 0)
    assert [o["name"] for o in _tagged(contacts_client, coordinator, tag)] == [f"Werft {tag}"]


def test_a_row_another_refusal_leaves_to_rename_an_owner_is_refused_too(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    landlord: dict[str, Any],
) -> None:
    """The row naming the landlord is refused (a retired district): without it, the
    bakery's row finds the landlord by the mailbox alone, and would make it a business."""
    tag = landlord["tags"][0]
    district = new_district(contacts_client, admin, f"Altquartier {tag}")
    _retire(contacts_client, admin, district)
    content = (
        "name;street;email;kind;district;tags\n"
        f"Vermietung {tag};Kolumbusring 1;post@{tag}.example;landlord;Altquartier {tag};{tag}\n"
        f"Bäckerei {tag};Am Strom 3;info@{tag}.example;business;;{tag}\n"
    )
    body = _upload(contacts_client, coordinator, content.encode()).get_json()
    assert [(e["line"], list(e["errors"])) for e in body["errors"]] == [
        (2, ["district"]),
        (3, ["kind"]),
    ]
    assert "owns premises" in body["errors"][1]["errors"]["kind"][0]
    assert (body["valid_rows"], body["created_count"], body["updated_count"]) == (0, 0, 0)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"], done["updated_count"]) == ("committed", 0, 0)
    now = contacts_client.get(f"/api/v1/organisations/{landlord['id']}", headers=coordinator)
    assert (now.get_json()["name"], now.get_json()["kind"]) == (f"Vermietung {tag}", "landlord")


def test_an_import_task_stopped_by_a_database_error_is_failed(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Not every OperationalError is an outage: one a statement caused (a limit it
    exceeded) is not tried again, and the import is failed, not left running."""
    from sqlalchemy import text as sql_text

    from services.contacts import tasks
    from shared.db import db_session

    tag = f"imp{suffix()}"
    body = _upload(
        contacts_client, coordinator, f"name;tags\nEins {tag};{tag}\n".encode()
    ).get_json()
    assert _commit(contacts_client, coordinator, body["id"], background=True).status_code == 200
    with (
        contacts_app.app_context(),
        tasks._failing_on_error(tasks.run_import, uuid.UUID(body["id"])),
    ):
        db_session().execute(sql_text("SELECT CAST(repeat('x', 3000) AS tsvector)"))
    record = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert record["status"] == "failed"


def test_a_district_retired_between_preview_and_commit_is_not_given(
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Any,
) -> None:
    tag = f"imp{suffix()}"
    district = new_district(contacts_client, admin, f"Neuquartier {tag}")
    other = make_org(name=f"Anders {tag}", district="Schmarl", email=f"a@{tag}.example")
    content = (
        "name;email;district;tags\n"
        f"Anders {tag};a@{tag}.example;Neuquartier {tag};{tag}\n"
        f"Neu {tag};;Neuquartier {tag};{tag}\n"
        f"Auch neu {tag};;Schmarl;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert body["valid_rows"] == 3
    _retire(contacts_client, admin, district)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["status"], done["created_count"]) == ("committed", 1)
    assert [(e["line"], list(e["errors"])) for e in done["errors"]] == [
        (2, ["district"]),
        (3, ["district"]),
    ]
    now = contacts_client.get(f"/api/v1/organisations/{other['id']}", headers=coordinator)
    assert now.get_json()["district"] == "Schmarl"
    assert [o["name"] for o in _tagged(contacts_client, coordinator, tag)] == [f"Auch neu {tag}"]


def test_one_person_at_two_companies_makes_two_companies(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """In a file of contacts the email is the person's: one owner of two businesses with
    one address is two organisations, found again by their names and addresses."""
    tag = f"imp{suffix()}"
    content = _outlook(
        f"Frau;Ida;Ihde;Eiscafé Ihde {tag};Inhaberin;Warnowallee 3;Rostock;18107;;"
        f"ida@{tag}.example;;{tag};",
        f"Frau;Ida;Ihde;Blumen Ihde {tag};Inhaberin;Kolumbusring 8;Rostock;18106;;"
        f"ida@{tag}.example;;{tag};",
    )
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["created_count"], body["skipped_count"]) == (2, 0)
    _commit(contacts_client, coordinator, body["id"])
    names = sorted(o["name"] for o in _tagged(contacts_client, coordinator, tag))
    assert names == [f"Blumen Ihde {tag}", f"Eiscafé Ihde {tag}"]
    again = _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    ).get_json()
    assert (again["created_count"], again["updated_count"], again["skipped_count"]) == (0, 0, 2)
    assert len(_tagged(contacts_client, coordinator, tag)) == 2


def test_a_person_at_a_new_company_in_a_later_file_leaves_their_first_company_alone(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """The first file gave the bakery it created the owner's email; a later file naming her
    at a café (another name, another address) or at her flower shop in the bakery's
    building creates those and gives her a role there, instead of renaming the bakery. A
    company that moved is still found by the email."""
    tag = f"imp{suffix()}"
    email = f"anna-{tag}@mueller.example"
    header = "Firma;Vorname;Nachname;Straße;E-Mail-Adresse;Kategorien\n"
    first = f"Bäckerei {tag};Anna;Müller;Hauptstraße 1;{email};{tag}\n"
    _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, (header + first).encode()).get_json()["id"],
    )
    later = (
        header
        + f"Café {tag};Anna;Müller;Am Strom 3;{email};{tag}\n"
        + f"Blumen {tag};Anna;Müller;Hauptstraße 1;{email};{tag}\n"
        + f"Bäckerei {tag};Anna;Müller;Lange Straße 9;{email};{tag}\n"  # moved
    ).encode()
    body = _upload(contacts_client, coordinator, later).get_json()
    assert (body["created_count"], body["updated_count"]) == (2, 1)
    _commit(contacts_client, coordinator, body["id"])
    found = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    assert sorted(found) == [f"Blumen {tag}", f"Bäckerei {tag}", f"Café {tag}"]
    assert found[f"Bäckerei {tag}"]["street"] == "Lange Straße"
    [anna] = _person_by_email(contacts_client, coordinator, email)
    assert sorted(r["organisation_name"] for r in anna["roles"]) == sorted(found)


def test_a_company_with_the_email_of_a_contact_above_it_is_a_company_of_its_own(
    contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A row of a company alone (no person) whose email is that of a contact in an earlier
    row (the same mailbox) is not a repeat of the contact's company: it is created, and a
    second import finds each company again instead of renaming one into the other."""
    tag = f"imp{suffix()}"
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail-Adresse;Kategorien\n"
        f"Café {tag};Am Strom 3;Anna;Alt;info-{tag}@x.example;{tag}\n"
        f"Werft {tag};Werftstraße 1;;;info-{tag}@x.example;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["created_count"], body["skipped_count"]) == (2, 0)
    _commit(contacts_client, coordinator, body["id"])
    first = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    assert sorted(first) == [f"Café {tag}", f"Werft {tag}"]
    again = _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    ).get_json()
    assert (again["created_count"], again["updated_count"]) == (0, 0)
    now = {o["name"]: o for o in _tagged(contacts_client, coordinator, tag)}
    assert {name: o["id"] for name, o in now.items()} == {
        name: o["id"] for name, o in first.items()
    }


PEOPLE_COUNTS = ("people_created_count", "people_linked_count")


def _person_by_email(
    client: FlaskClient, headers: dict[str, str], email: str
) -> list[dict[str, Any]]:
    body = client.get("/api/v1/people", query_string={"email": email}, headers=headers)
    return list(body.get_json()["items"])


def test_a_person_at_two_companies_in_one_file_is_one_person_with_two_roles(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """Anna Müller is the contact at a bakery and the owner of a café: one person, told by
    her email (in any case), with a role at each; the first row's phone and spelling of
    her name stay. The same file again adds no person and no role."""
    tag = f"imp{suffix()}"
    email = f"anna-{tag}@mueller-beratung.example"
    content = _outlook(
        f"Frau;Anna;Müller;Bäckerei Schulz {tag};;Doberaner Straße 5;Rostock;18057;0381 111;"
        f"{email};;{tag};",
        f"Frau;Anna;Mueller;Café Ostsee {tag};Inhaberin;Am Strom 3;Rostock;18119;0381 222;"
        f"{email.upper()};;{tag};",
    )
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["created_count"], *(body[key] for key in PEOPLE_COUNTS)) == (2, 1, 1)
    done = _commit(contacts_client, coordinator, body["id"], mode="all_or_nothing").get_json()
    assert (done["created_count"], *(done[key] for key in PEOPLE_COUNTS)) == (2, 1, 1)

    [anna] = _person_by_email(contacts_client, coordinator, email)
    orgs = {o["name"]: o["id"] for o in _tagged(contacts_client, coordinator, tag)}
    assert (anna["first_name"], anna["last_name"], anna["phone"]) == ("Anna", "Müller", "0381 111")
    assert sorted((r["organisation_name"], r["role"]) for r in anna["roles"]) == [
        (f"Bäckerei Schulz {tag}", "contact_person"),
        (f"Café Ostsee {tag}", "owner"),
    ]
    with get_database(contacts_app).session() as session:
        events = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_id == anna["id"])
            .order_by(OutboxEvent.id)
        ).all()
        assert [(e.type, e.version) for e in events] == [
            ("contacts.person.created", 1),
            ("contacts.person.updated", 2),
        ]
        assert sorted(events[1].payload["organisation_ids"]) == sorted(orgs.values())

    again = _upload(contacts_client, coordinator, content).get_json()
    assert (again["created_count"], *(again[key] for key in PEOPLE_COUNTS)) == (0, 0, 0)
    done = _commit(contacts_client, coordinator, again["id"]).get_json()
    assert (done["created_count"], *(done[key] for key in PEOPLE_COUNTS)) == (0, 0, 0)
    [same] = _person_by_email(contacts_client, coordinator, email)
    assert (same["id"], same["version"], len(same["roles"])) == (anna["id"], 2, 2)


def test_a_second_contact_after_a_row_matched_by_id_joins_that_organisation(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Any
) -> None:
    """Our export with contacts added: the first row finds the bakery by its id (renamed in
    the register since), the second row, the same company without the id, is a second
    contact there, not a person left out."""
    tag = f"imp{suffix()}"
    bakery = make_org(name=f"Backstube {tag}", street="Doberaner Straße", house_number="5")
    content = (
        "id;Firma;Straße;Vorname;Nachname;E-Mail-Adresse\n"
        f"{bakery['id']};Bäckerei Schulz {tag};Doberaner Straße 5;Anna;Alt;anna-{tag}@x.example\n"
        f";Bäckerei Schulz {tag};Doberaner Straße 5;Bernd;Bauer;bernd-{tag}@x.example\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert tuple(body[key] for key in PEOPLE_COUNTS) == (2, 0)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert tuple(done[key] for key in PEOPLE_COUNTS) == (2, 0)
    for who in ("anna", "bernd"):
        [person] = _person_by_email(contacts_client, coordinator, f"{who}-{tag}@x.example")
        assert [r["organisation_id"] for r in person["roles"]] == [bakery["id"]]
    again = _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    ).get_json()
    assert tuple(again[key] for key in PEOPLE_COUNTS) == (0, 0)


def test_a_person_of_the_register_gets_a_role_as_a_patch_gives_it(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    """A file naming someone of the register (by email) at a new company gives that person
    a role there: the history entry and the event a PATCH of their roles writes, for a
    twin given the same role through the API."""
    tag = f"imp{suffix()}"
    shop = contacts_client.post(
        "/api/v1/organisations",
        json={"kind": "business", "name": f"Kiosk {tag}"},
        headers=coordinator,
    ).get_json()
    twins = [
        contacts_client.post(
            "/api/v1/people",
            json={
                "first_name": "Anna",
                "last_name": "Müller",
                "email": f"{who}-{tag}@mueller-beratung.example",
                "phone": "0381 111",
                "roles": [{"organisation_id": shop["id"], "role": "contact_person"}],
            },
            headers=coordinator,
        ).get_json()
        for who in ("anna", "twin")
    ]
    anna, twin = twins
    content = (
        "Firma;Vorname;Nachname;Position;E-Mail-Adresse;Mobiltelefon;Kategorien\n"
        f"Café Ostsee {tag};Anna;Müller;Inhaberin;{anna['email'].upper()};0170 999;{tag}\n"
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert (body["created_count"], *(body[key] for key in PEOPLE_COUNTS)) == (1, 0, 1)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert (done["created_count"], *(done[key] for key in PEOPLE_COUNTS)) == (1, 0, 1)
    [cafe] = _tagged(contacts_client, coordinator, tag)
    patched = contacts_client.patch(
        f"/api/v1/people/{twin['id']}",
        json={
            "roles": [
                {"organisation_id": shop["id"], "role": "contact_person"},
                {"organisation_id": cafe["id"], "role": "owner"},
            ]
        },
        headers=coordinator,
    )
    assert patched.status_code == 200, patched.get_json()

    [imported] = _person_by_email(contacts_client, coordinator, anna["email"])
    assert imported["id"] == anna["id"]
    assert (imported["version"], imported["phone"]) == (2, "0381 111")  # her own phone stays

    def history(person: dict[str, Any]) -> list[Any]:
        entries = contacts_client.get(
            f"/api/v1/people/{person['id']}/history", headers=coordinator
        ).get_json()
        return [(e["action"], e["before"], e["after"]) for e in entries[1:]]

    assert history(anna) == history(twin)
    assert history(anna)[0][0] == "updated"
    with get_database(contacts_app).session() as session:

        def events(person: dict[str, Any]) -> list[Any]:
            found = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.aggregate_id == person["id"])
                .order_by(OutboxEvent.id)
            )
            return [
                (
                    e.type,
                    e.version,
                    {k: v for k, v in e.payload.items() if k not in ("id", "email")},
                )
                for e in found
            ]

        assert events(anna) == events(twin)
        assert [e[:2] for e in events(anna)] == [
            ("contacts.person.created", 1),
            ("contacts.person.updated", 2),
        ]

    again = _commit(
        contacts_client,
        coordinator,
        _upload(contacts_client, coordinator, content).get_json()["id"],
    ).get_json()
    assert (again["created_count"], *(again[key] for key in PEOPLE_COUNTS)) == (0, 0, 0)
    [still] = _person_by_email(contacts_client, coordinator, anna["email"])
    assert (still["version"], len(still["roles"])) == (2, 2)


def test_a_later_row_fills_only_what_the_person_lacks(
    contacts_client: FlaskClient, coordinator: dict[str, str], make_org: Any
) -> None:
    """Known by her email and last name, a person whose first name and phone the register
    lacks gets them from a row naming her at another company, and the company she was at
    finds her by her new first name; what she has stays."""
    tag = f"imp{suffix()}"
    shop = make_org(name=f"Kiosk {tag}", tags=[tag])
    email = f"mueller-{tag}@beratung.example"
    person = contacts_client.post(
        "/api/v1/people",
        json={
            "last_name": "Müller",
            "email": email,
            "roles": [{"organisation_id": shop["id"], "role": "owner"}],
        },
        headers=coordinator,
    ).get_json()
    content = (
        "Firma;Vorname;Nachname;E-Mail-Adresse;Mobiltelefon;Kategorien\n"
        f"Café Ostsee {tag};Anna;Müller;{email};0170 999;{tag}\n"
        f"Werft {tag};Annette;Müller;{email};0170 111;{tag}\n"  # another first name: not her
    ).encode()
    body = _upload(contacts_client, coordinator, content).get_json()
    assert tuple(body[key] for key in PEOPLE_COUNTS) == (1, 1)
    done = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert tuple(done[key] for key in PEOPLE_COUNTS) == (1, 1)
    found = contacts_client.get(f"/api/v1/people/{person['id']}", headers=coordinator).get_json()
    assert (found["first_name"], found["last_name"], found["phone"]) == (
        "Anna",
        "Müller",
        "0170 999",
    )
    assert sorted(r["organisation_name"] for r in found["roles"]) == [
        f"Café Ostsee {tag}",
        f"Kiosk {tag}",
    ]
    hits = contacts_client.get(
        "/api/v1/search", query_string={"q": f"anna kiosk {tag}"}, headers=coordinator
    ).get_json()
    assert shop["id"] in [hit["id"] for hit in hits["items"]]
    assert len(_person_by_email(contacts_client, coordinator, email)) == 2
