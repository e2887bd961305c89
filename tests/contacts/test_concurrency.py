"""Concurrent writes on the real database: the overlap is forced, not hoped for.

Each test holds a row lock (or an uncommitted insert) in a transaction of its own, starts
two requests in threads, waits until PostgreSQL shows both waiting for that lock, and
then lets go (the helpers are in concurrency.py). Before the fix both requests read the
same version and both wrote it (or the second insert ended in a 500); now the writers take
turns.
"""

from __future__ import annotations

import io
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from services.contacts.models import Change, OutboxEvent
from services.contacts.services import organisations
from shared.db import get_database
from shared.problems import PROBLEM_MIMETYPE, register_problem_handlers
from shared.testing import unique_email, wait_until

from .concurrency import Call, overlapping, statuses, waiting_for_locks
from .conftest import Maker, role, roles_of, suffix


def event_versions(app: Flask, aggregate_id: str) -> list[tuple[str, int]]:
    with get_database(app).session() as session:
        return [
            (type_, version)
            for type_, version in session.execute(
                select(OutboxEvent.type, OutboxEvent.version)
                .where(OutboxEvent.aggregate_id == aggregate_id)
                .order_by(OutboxEvent.id)
            )
        ]


def assert_increasing(versions: list[int]) -> None:
    """1, 2, 3 …: no version twice, none skipped, in the order they were written."""
    assert versions == list(range(1, len(versions) + 1)), versions


def history_actions(app: Flask, entity_type: str, entity_id: str) -> list[str]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(Change.action)
                .where(Change.entity_type == entity_type, Change.entity_id == entity_id)
                .order_by(Change.id)
            )
        )


LOCK_ORGANISATION = "SELECT 1 FROM organisations WHERE id = :id FOR UPDATE"
LOCK_PERSON = "SELECT 1 FROM people WHERE id = :id FOR UPDATE"
LOCK_PREMISES = "SELECT 1 FROM premises WHERE id = :id FOR UPDATE"


def patching(path: str, headers: dict[str, str], **body: Any) -> Call:
    return lambda c: c.patch(path, json=body, headers=headers)


def archiving(path: str, headers: dict[str, str]) -> Call:
    return lambda c: c.post(f"{path}/archive", json={"archived": True}, headers=headers)


def merging(survivor_id: str, other_id: str, headers: dict[str, str]) -> Call:
    return lambda c: c.post(
        f"/api/v1/organisations/{survivor_id}/merge", json={"other_id": other_id}, headers=headers
    )


def renaming(district_id: int, name: str, headers: dict[str, str]) -> Call:
    return lambda c: c.patch(
        f"/api/v1/districts/{district_id}", json={"name": name}, headers=headers
    )


def test_two_patches_of_the_same_version_one_wins_the_other_is_409(
    contacts_app: Flask, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org()
    path = f"/api/v1/organisations/{org['id']}"
    responses = overlapping(
        contacts_app,
        [
            patching(path, coordinator, sector="A", version=1),
            patching(path, coordinator, city="B", version=1),
        ],
        LOCK_ORGANISATION,
        id=org["id"],
    )
    assert statuses(responses) == [200, 409]
    won = next(r for r in responses if r.status_code == 200).get_json()
    lost = next(r for r in responses if r.status_code == 409)
    assert lost.mimetype == PROBLEM_MIMETYPE
    assert lost.get_json()["current_version"] == 2
    # The OpenAPI document's problem schema holds what a conflict carries.
    document = contacts_app.test_client().get("/api/v1/openapi.json").get_json()
    jsonschema.validate(lost.get_json(), document["components"]["schemas"]["Problem"])
    assert won["version"] == 2
    now = contacts_app.test_client().get(path, headers=coordinator).get_json()
    assert now["version"] == 2
    assert (now["sector"], now["city"]) in {("A", None), (None, "B")}
    events = event_versions(contacts_app, org["id"])
    assert events == [("contacts.organisation.created", 1), ("contacts.organisation.updated", 2)]
    assert history_actions(contacts_app, "organisation", org["id"]) == ["created", "updated"]


def test_patches_and_archive_without_version_take_turns_and_lose_nothing(
    contacts_app: Flask, coordinator: dict[str, str], make_org: Maker
) -> None:
    org = make_org()
    path = f"/api/v1/organisations/{org['id']}"
    responses = overlapping(
        contacts_app,
        [
            patching(path, coordinator, sector="A"),
            patching(path, coordinator, city="B"),
            archiving(path, coordinator),
        ],
        LOCK_ORGANISATION,
        id=org["id"],
    )
    assert statuses(responses) == [200, 200, 200]
    assert sorted(r.get_json()["version"] for r in responses) == [2, 3, 4]
    now = contacts_app.test_client().get(path, headers=coordinator).get_json()
    assert (now["sector"], now["city"], now["archived"], now["version"]) == ("A", "B", True, 4)
    events = event_versions(contacts_app, org["id"])
    assert_increasing([version for _, version in events])
    assert sorted(type_ for type_, _ in events) == [
        "contacts.organisation.archived",
        "contacts.organisation.created",
        "contacts.organisation.updated",
        "contacts.organisation.updated",
    ]


@pytest.mark.parametrize(
    ("entity", "lock", "change", "changed", "events"),
    [  # premises publish no events
        ("person", LOCK_PERSON, {"phone": "0381 1234"}, "0381 1234", 3),
        ("premises", LOCK_PREMISES, {"floor_area": "95"}, 95, 0),
    ],
)
def test_a_patch_and_an_archive_take_turns(
    contacts_app: Flask,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
    make_premises: Maker,
    entity: str,
    lock: str,
    change: dict[str, Any],
    changed: Any,
    events: int,
) -> None:
    if entity == "person":
        record, path = make_person(), "/api/v1/people"
    else:
        record = make_premises(owner_id=make_org(kind="landlord")["id"])
        path = "/api/v1/premises"
    path = f"{path}/{record['id']}"
    responses = overlapping(
        contacts_app,
        [patching(path, coordinator, **change), archiving(path, coordinator)],
        lock,
        id=record["id"],
    )
    assert statuses(responses) == [200, 200]
    assert sorted(r.get_json()["version"] for r in responses) == [2, 3]
    now = contacts_app.test_client().get(path, headers=coordinator).get_json()
    (field,) = change
    assert (now[field], now["archived"], now["version"]) == (changed, True, 3)
    assert sorted(history_actions(contacts_app, entity, record["id"])) == [
        "archived",
        "created",
        "updated",
    ]
    versions = [v for _, v in event_versions(contacts_app, record["id"])]
    assert versions == list(range(1, events + 1))


def test_the_same_role_added_twice_at_once_is_added_once(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
) -> None:
    org = make_org()
    person = make_person()
    path = f"/api/v1/people/{person['id']}"
    roles = [role(org, "contact_person")]
    responses = overlapping(
        contacts_app,
        [patching(path, coordinator, roles=roles), patching(path, coordinator, roles=roles)],
        LOCK_PERSON,
        id=person["id"],
    )
    # The second sees the first's role: nothing left to change, so no second version.
    assert statuses(responses) == [200, 200]
    now = contacts_client.get(path, headers=coordinator).get_json()
    assert now["version"] == 2
    assert roles_of(now) == [(org["id"], "contact_person")]
    assert event_versions(contacts_app, person["id"]) == [
        ("contacts.person.created", 1),
        ("contacts.person.updated", 2),
    ]
    people = contacts_client.get(f"/api/v1/organisations/{org['id']}", headers=coordinator)
    assert [p["person_id"] for p in people.get_json()["people"]] == [person["id"]]
    history = contacts_client.get(f"{path}/history", headers=coordinator).get_json()
    assert [h["action"] for h in history] == ["created", "updated"]
    assert history[-1]["after"]["roles"] == roles


def test_merges_in_opposite_directions_archive_only_one(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
) -> None:
    token = suffix()
    first = make_org(name=f"Fischer {token}")
    second = make_org(name=f"Fischer {token} GmbH")
    person = make_person(last_name=f"Fischer{token}", roles=[role(second, "owner")])
    both = sorted([first["id"], second["id"]])
    responses = overlapping(
        contacts_app,
        [
            merging(first["id"], second["id"], coordinator),
            merging(second["id"], first["id"], coordinator),
        ],
        "SELECT 1 FROM organisations WHERE id IN (:a, :b) ORDER BY id FOR UPDATE",
        a=both[0],
        b=both[1],
    )
    assert statuses(responses) == [200, 409]
    kept = next(r for r in responses if r.status_code == 200).get_json()
    gone_id = second["id"] if kept["id"] == first["id"] else first["id"]
    gone = contacts_client.get(f"/api/v1/organisations/{gone_id}", headers=coordinator)
    assert kept["archived"] is False
    assert gone.get_json()["archived"] is True
    survivor = contacts_client.get(f"/api/v1/organisations/{kept['id']}", headers=coordinator)
    assert survivor.get_json()["archived"] is False
    assert [p["person_id"] for p in survivor.get_json()["people"]] == [person["id"]]
    for org_id in both:
        assert_increasing([v for _, v in event_versions(contacts_app, org_id)])
    # The person's role moved only if the organisation holding it went.
    moved = [("contacts.person.updated", 2)] if gone_id == second["id"] else []
    assert event_versions(contacts_app, person["id"]) == [("contacts.person.created", 1), *moved]


def test_a_person_changed_while_a_merge_moves_their_role_gets_both(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
) -> None:
    """The person's change reads their roles, then waits for the organisation the merge
    holds; when it gets it, the role has moved on, so it locks the new one and goes on."""
    token = suffix()
    keep = make_org(name=f"Schulz {token}")
    other = make_org(name=f"Schulz {token} e.K.")
    person = make_person(last_name=f"Schulz{token}", roles=[role(other, "owner")])
    path = f"/api/v1/people/{person['id']}"
    responses = overlapping(
        contacts_app,
        [
            merging(keep["id"], other["id"], coordinator),
            patching(path, coordinator, first_name="Anke"),
        ],
        LOCK_ORGANISATION,
        id=other["id"],
    )
    assert [r.status_code for r in responses] == [200, 200], [r.get_json() for r in responses]
    now = contacts_client.get(path, headers=coordinator).get_json()
    assert now["first_name"] == "Anke"
    assert roles_of(now) == [(keep["id"], "owner")]
    assert event_versions(contacts_app, person["id"]) == [
        ("contacts.person.created", 1),
        ("contacts.person.updated", 2),
        ("contacts.person.updated", 3),
    ]
    # The kept organisation's search text has the new first name.
    found = contacts_client.get(f"/api/v1/search?q=anke schulz{token}", headers=coordinator)
    assert keep["id"] in {hit["id"] for hit in found.get_json()["items"]}


LOCK_NEED = "SELECT 1 FROM needs WHERE key = :key FOR UPDATE"


def _district_and_need(client: FlaskClient, admin: dict[str, str], tag: str) -> tuple[int, str]:
    """A new district, named "Altviertel <tag>", and a new need: their id and key."""
    district = client.post("/api/v1/districts", json={"name": f"Altviertel {tag}"}, headers=admin)
    need = client.post("/api/v1/needs", json={"label": f"Bedarf {tag}"}, headers=admin)
    assert (district.status_code, need.status_code) == (201, 201)
    return district.get_json()["id"], need.get_json()["key"]


def _previewed(client: FlaskClient, headers: dict[str, str], content: bytes) -> dict[str, Any]:
    """The preview of a CSV file uploaded for import."""
    response = client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(content), "register.csv")},
        headers=headers,
        content_type="multipart/form-data",
    )
    return dict(response.get_json())


def _found(client: FlaskClient, headers: dict[str, str], query: str) -> set[str]:
    hits = client.get("/api/v1/search", query_string={"q": query}, headers=headers)
    return {hit["id"] for hit in hits.get_json()["items"]}


def _assert_in_the_renamed_district(
    client: FlaskClient, headers: dict[str, str], org_id: str, tag: str
) -> None:
    """The organisation is in Neuviertel <tag>, found by that name and not by the old."""
    now = client.get(f"/api/v1/organisations/{org_id}", headers=headers)
    assert now.get_json()["district"] == f"Neuviertel {tag}"
    assert _found(client, headers, f"neuviertel {tag}") == {org_id}
    assert _found(client, headers, f"altviertel {tag}") == set()


@pytest.mark.parametrize("how", ["post", "patch", "import"])
def test_an_organisation_given_a_district_while_it_is_renamed_is_found_by_the_new_name(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Maker,
    how: str,
) -> None:
    """The write reads the district's name, writes the organisation's search text and then
    waits (for the need it gives, whose row the test holds); the rename starts meanwhile.
    The rename read which organisations had the district before the write committed, so
    the organisation kept the old name in its search text (until a reindex). Now the write
    holds the district from the start, the rename waits for it and then sees the
    organisation."""
    tag = suffix()
    district_id, need = _district_and_need(contacts_client, admin, tag)
    given = {"district": f"Altviertel {tag}", "needs": [need]}
    name = f"Laden {tag}"
    if how == "post":
        path, body = "/api/v1/organisations", {"kind": "business", "name": name, **given}
    elif how == "patch":
        path, body = f"/api/v1/organisations/{make_org(name=name)['id']}", given
    else:
        content = f"name;district;needs\n{name};Altviertel {tag};{need}\n".encode()
        upload = _previewed(contacts_client, coordinator, content)
        assert upload["valid_rows"] == 1, upload
        path, body = f"/api/v1/imports/{upload['id']}/commit", {"mode": "valid_only"}
    method = "PATCH" if how == "patch" else "POST"
    responses = overlapping(
        contacts_app,
        [
            lambda c: c.open(path, method=method, json=body, headers=coordinator),
            renaming(district_id, f"Neuviertel {tag}", admin),
        ],
        LOCK_NEED,
        key=need,
    )
    assert statuses(responses) in ([200, 200], [200, 201])
    [org_id] = _found(contacts_client, coordinator, name)
    _assert_in_the_renamed_district(contacts_client, coordinator, org_id, tag)


def test_a_merge_that_gives_the_survivor_a_district_being_renamed_leaves_the_new_name(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    admin: dict[str, str],
    make_org: Maker,
) -> None:
    """The merge holds the organisation it absorbs, which has the district; the rename
    waits for it there, having read which organisations have the district. The survivor
    gets the district from the merge, and the rename reads them again once it has them."""
    tag = suffix()
    district_id, _ = _district_and_need(contacts_client, admin, tag)
    survivor = make_org(name=f"Nord {tag}")
    other = make_org(name=f"Nord {tag} GmbH", district=f"Altviertel {tag}")
    merged, renamed = overlapping(
        contacts_app,
        [
            merging(survivor["id"], other["id"], coordinator),
            renaming(district_id, f"Neuviertel {tag}", admin),
        ],
        LOCK_ORGANISATION,
        id=other["id"],
    )
    assert (merged.status_code, renamed.status_code) == (200, 200), merged.get_json()
    _assert_in_the_renamed_district(contacts_client, coordinator, survivor["id"], tag)


def test_two_districts_of_one_name_at_once_one_is_409(
    contacts_app: Flask, admin: dict[str, str]
) -> None:
    name = f"Stadtteil {suffix()}"
    # An uncommitted insert of the name: both requests pass the check for an existing
    # district and wait at their own insert; the rollback lets them race.
    responses = overlapping(
        contacts_app,
        [
            lambda c: c.post("/api/v1/districts", json={"name": name}, headers=admin),
            lambda c: c.post("/api/v1/districts", json={"name": name}, headers=admin),
        ],
        "INSERT INTO districts (name, active) VALUES (:name, true)",
        name=name,
    )
    assert statuses(responses) == [201, 409]
    lost = next(r for r in responses if r.status_code == 409)
    assert lost.mimetype == PROBLEM_MIMETYPE
    assert lost.get_json()["detail"] == "A district with this name exists already."


def test_two_users_of_one_email_at_once_one_is_409(
    contacts_app: Flask, admin: dict[str, str]
) -> None:
    email = unique_email("race")
    body = {"email": email, "role": "viewer", "password": "mindestens-12-zeichen"}
    responses = overlapping(
        contacts_app,
        [
            lambda c: c.post("/api/v1/users", json=body, headers=admin),
            lambda c: c.post("/api/v1/users", json=body, headers=admin),
        ],
        "INSERT INTO users (id, email, name, password_hash, role, is_active, created_at)"
        " VALUES (:id, :email, '', 'x', 'viewer', true, now())",
        id=uuid.uuid4(),
        email=email,
    )
    assert statuses(responses) == [201, 409]
    lost = next(r for r in responses if r.status_code == 409)
    assert lost.get_json()["detail"] == "A user with this email exists already."


def test_a_write_from_a_stale_copy_fails_instead_of_repeating_a_version(
    contacts_app: Flask, coordinator: dict[str, str], make_org: Maker
) -> None:
    """The mapper's version counter: an UPDATE of a copy read before another change
    commits matches no row, even if a writer forgot to lock."""
    org = make_org()
    database = get_database(contacts_app)
    with database.session() as stale:
        copy = organisations.get_organisation(stale, uuid.UUID(org["id"]))
        stale.commit()  # the copy outlives its transaction (expire_on_commit=False)
        changed = contacts_app.test_client().patch(
            f"/api/v1/organisations/{org['id']}", json={"sector": "A"}, headers=coordinator
        )
        assert changed.get_json()["version"] == 2
        organisations.change(stale, copy, {"city": "B"}, actor="test")
        assert copy.version == 2
        with pytest.raises(StaleDataError):
            stale.commit()
    assert event_versions(contacts_app, org["id"]) == [
        ("contacts.organisation.created", 1),
        ("contacts.organisation.updated", 2),
    ]


def test_constraint_violations_and_stale_writes_reaching_the_handler_are_409(
    contacts_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net for a check-then-insert not yet guarded: a unique or foreign-key
    violation is a 409 problem, logged without the statement's parameters."""
    name = f"Geheim {suffix()}"
    errors: dict[str, Exception] = {}
    with get_database(contacts_app).engine.connect() as conn:
        conn.execute(
            text("INSERT INTO districts (name, active) VALUES (:name, true)"), {"name": name}
        )
        for key, statement in (
            ("unique", "INSERT INTO districts (name, active) VALUES (:name, true)"),
            (
                "foreign_key",  # a role at an organisation and of a person that do not exist
                "INSERT INTO roles (id, person_id, organisation_id, role)"
                " VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'owner')",
            ),
            ("not_null", "INSERT INTO districts (name, active) VALUES (:name || 'x', NULL)"),
        ):
            with pytest.raises(IntegrityError) as raised, conn.begin_nested():
                conn.execute(text(statement), {"name": name})
            errors[key] = raised.value
        conn.rollback()

    app = Flask("problems")
    register_problem_handlers(app)

    @app.get("/raise/<key>")
    def _raise(key: str) -> Any:
        if key == "stale":
            raise StaleDataError("UPDATE statement on table 'organisations' matched 0 rows")
        raise errors[key]

    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        for key, status in (
            ("unique", 409),
            ("foreign_key", 409),
            ("stale", 409),
            ("not_null", 500),  # a bug: the schemas and use cases check that first
        ):
            response = client.get(f"/raise/{key}")
            assert response.status_code == status, key
            assert response.mimetype == PROBLEM_MIMETYPE
    assert name not in caplog.text


def test_an_import_compares_what_it_matches_after_an_edit_at_the_same_time(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
) -> None:
    """The commit locks the organisations its rows match before it decides which rows
    would change nothing: an edit that lands meanwhile is compared with, not missed."""

    tag = suffix()
    org = make_org(name=f"Kiosk {tag}", sector="Handel", email=f"k@{tag}.example")
    content = f"name;email;sector\nKiosk {tag};k@{tag}.example;Handel\n".encode()
    body = _previewed(contacts_client, coordinator, content)
    assert (body["updated_count"], body["skipped_count"]) == (0, 1)  # the same, as it stands
    edit = "UPDATE organisations SET sector = 'Imbiss', version = version + 1 WHERE id = :id"
    [committed] = overlapping(  # the edit lands while the commit waits
        contacts_app,
        [
            lambda c: c.post(
                f"/api/v1/imports/{body['id']}/commit",
                json={"mode": "valid_only"},
                headers=coordinator,
            )
        ],
        edit,
        commit=True,
        id=org["id"],
    )
    done = committed.get_json()
    assert (done["status"], done["updated_count"]) == ("committed", 1)
    now = contacts_client.get(f"/api/v1/organisations/{org['id']}", headers=coordinator)
    assert now.get_json()["sector"] == "Handel"


def test_an_import_whose_person_gets_a_role_meanwhile_takes_its_locks_in_order(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    coordinator: dict[str, str],
    make_org: Maker,
    make_person: Maker,
) -> None:
    """The commit locks the organisations of a person it gives a role before the person.
    When the person, once locked, has a role it did not see (given while it waited), it
    lets go and locks again in that order, instead of locking the new organisation while
    it holds the person: a write holding that organisation and waiting for the person
    would have been a deadlock."""
    tag = suffix()
    kiosk = make_org(name=f"Kiosk {tag}")
    shipyard = make_org(name=f"Werft {tag}")
    email = f"anna-{tag}@x.example"
    anna = make_person(
        first_name="Anna", last_name="Alt", email=email, roles=[role(kiosk, "owner")]
    )
    content = f"Firma;Vorname;Nachname;E-Mail-Adresse\nCafé {tag};Anna;Alt;{email}\n".encode()
    body = _previewed(contacts_client, coordinator, content)
    assert body["people_linked_count"] == 1
    engine = get_database(contacts_app).engine
    lock = "SELECT 1 FROM {} WHERE id = :id FOR NO KEY UPDATE"
    with (
        engine.connect() as holder,
        engine.connect() as meanwhile,
        ThreadPoolExecutor(1) as pool,
    ):
        holder_pid = holder.scalar(text("SELECT pg_backend_pid()"))
        holder.execute(text(lock.format("organisations")), {"id": shipyard["id"]})
        meanwhile.execute(text(lock.format("people")), {"id": anna["id"]})
        meanwhile.execute(
            text(
                "INSERT INTO roles (id, person_id, organisation_id, role)"
                " VALUES (gen_random_uuid(), :person, :organisation, 'contact_person')"
            ),
            {"person": anna["id"], "organisation": shipyard["id"]},
        )
        commit = pool.submit(
            lambda: contacts_app.test_client().post(
                f"/api/v1/imports/{body['id']}/commit",
                json={"mode": "valid_only"},
                headers=coordinator,
            )
        )
        wait_until(lambda: commit.done() or waiting_for_locks(contacts_app))
        meanwhile.commit()  # the role at the shipyard lands while the commit waits

        def waits_for_holder() -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE :pid = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": holder_pid},
                    )
                )

        wait_until(lambda: commit.done() or waits_for_holder())
        holder.execute(text("SET LOCAL lock_timeout = '5s'"))
        holder.execute(text(lock.format("people")), {"id": anna["id"]})  # not held by it
        holder.rollback()
        done = commit.result(timeout=15).get_json()
    assert (done["status"], done["people_linked_count"]) == ("committed", 1), done
    now = contacts_client.get(f"/api/v1/people/{anna['id']}", headers=coordinator).get_json()
    assert sorted(r["organisation_name"] for r in now["roles"]) == sorted(
        [f"Café {tag}", f"Kiosk {tag}", f"Werft {tag}"]
    )
