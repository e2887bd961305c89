"""Imports in the worker: which files go there by themselves, the progress a check writes
while it runs, and a check that runs twice (a task delivered again) or meets another."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.contacts import tasks
from services.contacts.models import Import, ImportRow
from services.contacts.services import imports
from shared.db import get_database

from .conftest import suffix
from .test_import import (
    PEOPLE_COUNTS,
    _commit,
    _person_by_email,
    _tagged,
    _upload,
    mixed_encodings,
)


def _rows(tag: str, count: int) -> bytes:
    lines = [f"Betrieb {i} {tag};Hauptstr. {i};{tag}" for i in range(count)]
    return ("name;street;tags\n" + "\n".join(lines) + "\n").encode()


@pytest.fixture
def session(contacts_app: Flask) -> Iterator[Session]:
    with contacts_app.app_context(), get_database(contacts_app).session() as session:
        yield session


def _checking(session: Session, content: bytes) -> uuid.UUID:
    """An upload left to a worker (whose task this test runs itself)."""
    record = imports.preview_import(
        session,
        content=content,
        filename="gross.csv",
        mapping=None,
        actor="test",
        background=True,
        enqueue=lambda _id: None,
    )
    assert record.status == "checking"
    return record.id


def _staged(session: Session, import_id: uuid.UUID) -> dict[int, str]:
    rows = session.execute(
        select(ImportRow.line, ImportRow.name).where(ImportRow.import_id == import_id)
    )
    return {line: name for line, name in rows}


def test_files_of_more_than_2000_rows_go_to_the_worker_by_themselves(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    assert imports.BACKGROUND_ROWS == 2000
    tag = f"imp{suffix()}"
    small = _upload(contacts_client, coordinator, _rows(f"{tag}a", 2000))
    assert (small.status_code, small.get_json()["status"]) == (201, "previewed")

    large = _upload(contacts_client, coordinator, _rows(tag, 2001))
    assert large.status_code == 202, large.get_json()
    body = large.get_json()
    assert (body["status"], body["total_rows"]) == ("checking", 2001)
    with contacts_app.app_context():
        tasks.check_import.run(body["id"])  # what the worker runs
    # Its commit goes to the worker as well, unasked.
    queued = _commit(contacts_client, coordinator, body["id"]).get_json()
    assert queued["status"] == "queued"
    assert _tagged(contacts_client, coordinator, tag) == []
    with contacts_app.app_context():
        tasks.run_import.run(body["id"])
    done = contacts_client.get(f"/api/v1/imports/{body['id']}", headers=coordinator).get_json()
    assert (done["status"], done["created_count"], done["processed_rows"]) == (
        "committed",
        2001,
        2001,
    )


def test_a_file_in_two_encodings_checked_by_the_worker_names_its_windows_1252_lines(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    tag = f"imp{suffix()}"
    uploaded = contacts_client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(mixed_encodings(tag)), "zusammen.csv"), "background": "true"},
        headers=coordinator,
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 202, uploaded.get_json()
    with contacts_app.app_context():
        tasks.check_import.run(uploaded.get_json()["id"])  # what the worker runs
    body = contacts_client.get(
        f"/api/v1/imports/{uploaded.get_json()['id']}", headers=coordinator
    ).get_json()
    assert (body["status"], body["valid_rows"], body["encoding"]) == (
        "previewed",
        3,
        "utf-8+cp1252",
    )
    assert body["warnings"] == ["Lines 3, 5: not UTF-8, read as Windows-1252; check their umlauts."]
    _commit(contacts_client, coordinator, body["id"])
    assert sorted(org["name"] for org in _tagged(contacts_client, coordinator, tag)) == [
        f"Blumen Größe {tag}",
        f"Bäckerei Müller {tag}",
        f"Kiosk Jürgen {tag}",
    ]


def test_a_check_in_the_worker_shows_its_progress_while_it_runs(
    contacts_app: Flask, session: Session
) -> None:
    total = 2 * imports.PROGRESS_EVERY + 200
    import_id = _checking(session, _rows(f"imp{suffix()}", total))
    database = get_database(contacts_app)
    write = tasks._progress(import_id)  # the worker's progress writer
    seen: list[tuple[int, int]] = []

    def progress(done: int) -> None:
        write(done)
        with database.session() as other:  # what a client reading the import sees
            shown = other.scalar(select(Import.processed_rows).where(Import.id == import_id))
            seen.append((done, shown or 0))

    imports.check_import(session, import_id, progress=progress)
    assert [shown for done, shown in seen] == [done for done, shown in seen]
    assert [shown for _, shown in seen if 0 < shown < total], seen  # while it ran
    with database.session() as other:
        record = other.get(Import, import_id)
        assert record is not None
        assert (record.status, record.processed_rows, record.valid_rows) == (
            "previewed",
            total,
            total,
        )


def test_a_check_run_again_replaces_what_a_dead_run_staged_and_leaves_a_finished_import(
    contacts_client: FlaskClient, coordinator: dict[str, str], session: Session
) -> None:
    tag = f"imp{suffix()}"
    content = f"name;street;tags\nEins {tag};Hauptstr. 1;{tag}\nZwei {tag};Hauptstr. 2;{tag}\n"
    import_id = _checking(session, content.encode())
    # Rows a run staged before it died: one the file has, one it does not.
    folded: dict[str, Any] = {"search_text": "", "search_vector": "", "name_vector": ""}
    for line in (2, 99):
        session.add(
            ImportRow(
                import_id=import_id,
                line=line,
                name="Halb",
                match_name="",
                match_address="",
                **folded,
            )
        )
    session.commit()

    record = imports.check_import(session, import_id)
    assert (record.status, record.valid_rows, record.created_count) == ("previewed", 2, 2)
    assert _staged(session, import_id) == {2: f"Eins {tag}", 3: f"Zwei {tag}"}

    # Once more (a task delivered again): the preview stays as it was, though the register
    # changed meanwhile and a new check would count otherwise.
    made = contacts_client.post(
        "/api/v1/organisations",
        json={
            "kind": "business",
            "name": f"Eins {tag}",
            "street": "Hauptstr.",
            "house_number": "1",
            "tags": [tag],
        },
        headers=coordinator,
    )
    assert made.status_code == 201
    record = imports.check_import(session, import_id)
    assert (record.status, record.created_count) == ("previewed", 2)
    assert _staged(session, import_id) == {2: f"Eins {tag}", 3: f"Zwei {tag}"}

    # After the commit, a check delivered again stages nothing and leaves it committed.
    done = _commit(contacts_client, coordinator, str(import_id)).get_json()
    assert (done["status"], done["created_count"], done["skipped_count"]) == ("committed", 1, 1)
    session.expire_all()
    assert imports.check_import(session, import_id).status == "committed"
    assert _staged(session, import_id) == {}
    assert _commit(contacts_client, coordinator, str(import_id)).status_code == 409


def test_a_check_another_worker_is_at_leaves_the_import_to_it(
    contacts_app: Flask, session: Session
) -> None:
    tag = f"imp{suffix()}"
    import_id = _checking(session, f"name\nEins {tag}\n".encode())
    with get_database(contacts_app).session() as other:
        key = imports._lock_key(f"check-{import_id}")
        assert other.scalar(select(func.pg_try_advisory_xact_lock(key)))  # the other worker
        record = imports.check_import(session, import_id)
        assert (record.status, record.valid_rows) == ("checking", 0)
        assert _staged(session, import_id) == {}
        other.rollback()
    record = imports.check_import(session, import_id)
    assert (record.status, record.valid_rows) == ("previewed", 1)


def test_the_worker_makes_a_person_at_two_companies_one_person(
    contacts_app: Flask, contacts_client: FlaskClient, coordinator: dict[str, str], session: Session
) -> None:
    """A file checked and committed by the worker plans its people as a small one: one
    person by her email at two companies, and the preview's counts are the commit's."""
    tag = f"imp{suffix()}"
    email = f"anna-{tag}@mueller-beratung.example"
    content = (
        "Firma;Straße;Vorname;Nachname;E-Mail;Kategorien\n"
        f"Bäckerei Schulz {tag};Doberaner Straße 5;Anna;Müller;{email};{tag}\n"
        f"Café Ostsee {tag};Am Strom 3;Anna;Müller;{email};{tag}\n"
        f"Café Ostsee {tag};Am Strom 3;Jan;Jansen;;{tag}\n"
    ).encode()
    import_id = _checking(session, content)
    tasks.check_import.run(str(import_id))
    preview = contacts_client.get(f"/api/v1/imports/{import_id}", headers=coordinator).get_json()
    assert (preview["status"], *(preview[key] for key in PEOPLE_COUNTS)) == ("previewed", 2, 1)
    queued = _commit(contacts_client, coordinator, str(import_id), background=True).get_json()
    assert queued["status"] == "queued"
    tasks.run_import.run(str(import_id))
    done = contacts_client.get(f"/api/v1/imports/{import_id}", headers=coordinator).get_json()
    counts = ("created_count", "updated_count", "skipped_count", *PEOPLE_COUNTS)
    assert done["status"] == "committed"
    assert [done[key] for key in counts] == [preview[key] for key in counts] == [2, 0, 1, 2, 1]
    [anna] = _person_by_email(contacts_client, coordinator, email)
    assert len(anna["roles"]) == 2
