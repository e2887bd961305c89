"""Data protection by email address: what the register holds about it (Art. 15 and 20
GDPR), its erasure (Art. 17), and the suppression that keeps an erased address out of the
import and the API until an admin lifts it."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from services.contacts.services import suppressions
from shared.db import get_database

from .conftest import Maker, role, suffix
from .test_concurrency import LOCK_ORGANISATION, merging, overlapping
from .test_import import _commit, _upload
from .test_search import _search

ERASED = {"erased": True}


def _erase(client: FlaskClient, headers: dict[str, str], email: str) -> TestResponse:
    return client.post("/api/v1/privacy/erasures", json={"email": email}, headers=headers)


def _lift(client: FlaskClient, headers: dict[str, str], email: str) -> TestResponse:
    return client.delete(
        "/api/v1/privacy/suppressions", query_string={"email": email}, headers=headers
    )


@dataclass(frozen=True)
class Desk:
    """Requests about one address (``anna.<tag>@beispiel.example``): an admin answers
    them, a coordinator works the register meanwhile."""

    app: Flask
    client: FlaskClient
    admin: dict[str, str]
    coordinator: dict[str, str]
    tag: str

    @property
    def address(self) -> str:
        return f"anna.{self.tag}@beispiel.example"

    def export(
        self, email: str | None = None, headers: dict[str, str] | None = None, **query: Any
    ) -> TestResponse:
        return self.client.get(
            "/api/v1/privacy/export",
            query_string={"email": email or self.address, **query},
            headers=self.admin if headers is None else headers,
        )

    def held(self) -> dict[str, Any]:
        response = self.export()
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def erase(
        self, email: str | None = None, headers: dict[str, str] | None = None
    ) -> TestResponse:
        return _erase(
            self.client, self.admin if headers is None else headers, email or self.address
        )

    def lift(self, email: str | None = None, headers: dict[str, str] | None = None) -> TestResponse:
        return _lift(self.client, self.admin if headers is None else headers, email or self.address)

    def get(self, path: str, **query: Any) -> TestResponse:
        return self.client.get(f"/api/v1{path}", query_string=query, headers=self.coordinator)

    def rows(self, statement: str, **params: Any) -> list[Any]:
        with get_database(self.app).session() as session:
            return list(session.execute(text(statement), params))

    def mentions(self, needle: str) -> int:
        """History entries and stored events whose JSON holds ``needle``, in any case."""
        ((count,),) = self.rows(
            "SELECT (SELECT count(*) FROM changes"
            "        WHERE concat(before::text, ' ', after::text) ILIKE :pattern)"
            " + (SELECT count(*) FROM outbox WHERE payload::text ILIKE :pattern)",
            pattern=f"%{needle}%",
        )
        return int(count)

    def admin_email(self) -> str:
        return str(self.client.get("/api/v1/me", headers=self.admin).get_json()["email"])


@pytest.fixture
def desk(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    admin: dict[str, str],
    coordinator: dict[str, str],
) -> Desk:
    return Desk(contacts_app, contacts_client, admin, coordinator, suffix())


def _sha256(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def _archived_person(desk: Desk, make_person: Maker) -> dict[str, Any]:
    """Someone who had the address and left (archived, not deleted)."""
    person = make_person(last_name=f"Ehemalig{desk.tag}", email=desk.address)
    archived = desk.client.post(
        f"/api/v1/people/{person['id']}/archive", json={"archived": True}, headers=desk.coordinator
    )
    assert archived.status_code == 200, archived.get_json()
    return person


def test_export_holds_the_people_their_roles_and_history_and_the_organisations(
    desk: Desk, make_org: Maker, make_person: Maker
) -> None:
    tag, address = desk.tag, desk.address
    shop = make_org(name=f"Blumen {tag}")
    office = make_org(name=f"Kontor {tag}", email=address.upper())
    make_org(name=f"Andere {tag}", email=f"info.{tag}@beispiel.example")
    anna = make_person(
        first_name="Anna",
        last_name=f"Schmidt{tag}",
        email=f"Anna.{tag}@Beispiel.Example",
        roles=[role(shop, "owner")],
    )
    make_person(last_name=f"Berndt{tag}", email=f"bernd.{tag}@beispiel.example")
    patched = desk.client.patch(
        f"/api/v1/people/{anna['id']}", json={"phone": "0381 4567890"}, headers=desk.coordinator
    )
    assert patched.status_code == 200, patched.get_json()
    former = _archived_person(desk, make_person)

    response = desk.export(address.upper())

    assert response.status_code == 200, response.get_json()
    assert "Content-Disposition" not in response.headers
    body = response.get_json()
    assert (body["email"], body["email_sha256"]) == (address, _sha256(address))
    assert [entry["person"]["id"] for entry in body["people"]] == [anna["id"], former["id"]]
    entry = body["people"][0]
    person = entry["person"]
    assert (person["first_name"], person["last_name"], person["email"], person["phone"]) == (
        "Anna",
        f"Schmidt{tag}",
        address,
        "0381 4567890",
    )
    assert [(r["organisation_id"], r["organisation_name"], r["role"]) for r in person["roles"]] == [
        (shop["id"], shop["name"], "owner")
    ]
    assert [change["action"] for change in entry["history"]] == ["created", "updated"]
    assert entry["history"][1]["after"] == {"phone": "0381 4567890"}
    assert [org["id"] for org in body["organisations"]] == [office["id"]]
    (organisation,) = body["organisations"]
    assert (organisation["name"], organisation["email"]) == (office["name"], address)
    assert "people" not in organisation  # others' data is not theirs to receive
    assert (body["imports"], body["suppression"]) == ([], None)

    download = desk.export(download="true")
    assert download.status_code == 200
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and tag not in disposition
    assert download.get_json()["people"] == body["people"]


def test_export_of_an_address_the_register_does_not_hold_is_empty(desk: Desk) -> None:
    body = desk.held()
    assert (body["people"], body["organisations"], body["imports"]) == ([], [], [])
    assert body["suppression"] is None


def test_erasure_deletes_the_person_and_roles_and_empties_history_and_events(
    desk: Desk, make_org: Maker, make_person: Maker
) -> None:
    tag, address = desk.tag, desk.address
    first, last = f"Zoraida{tag}", f"Quendt{tag}"
    shop = make_org(name=f"Werkstatt {tag}")
    office = make_org(name=f"Kontor {tag}", email=address)
    person = make_person(
        first_name=first,
        last_name=last,
        email=address,
        roles=[role(shop, "owner"), role(office, "contact_person")],
    )
    colleague = make_person(last_name=f"Kollege{tag}", roles=[role(shop, "employee")])
    desk.client.patch(
        f"/api/v1/people/{person['id']}", json={"notes": "Ruft abends an"}, headers=desk.coordinator
    )
    assert shop["id"] in _search(desk.client, desk.coordinator, last)
    for needle in (address, first, last):
        assert desk.mentions(needle) > 0, needle

    response = desk.erase(address.upper())

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["email_sha256"] == _sha256(address)
    counts = {key: body[key] for key in ("people", "roles", "organisations", "imports")}
    assert counts == {"people": 1, "roles": 2, "organisations": 1, "imports": 0}
    # Emptied: the person's created and updated entries and events, the office's created
    # entry and event (its email), and the entry of the office's email cleared just now.
    assert (body["history_entries"], body["events"]) == (4, 3)
    assert desk.get(f"/people/{person['id']}").status_code == 404
    kept = desk.get(f"/organisations/{shop['id']}").get_json()
    assert [p["person_id"] for p in kept["people"]] == [colleague["id"]]
    assert _search(desk.client, desk.coordinator, last) == []
    assert _search(desk.client, desk.coordinator, f"Werkstatt {tag}") == [shop["id"]]
    assert desk.get(f"/organisations/{office['id']}").get_json()["email"] is None
    office_history = desk.get(f"/organisations/{office['id']}/history").get_json()
    assert office_history[0]["after"]["email"] == ERASED
    assert (office_history[-1]["before"], office_history[-1]["after"]) == (
        {"email": ERASED},
        {"email": None},
    )
    for needle in (address, first, last):
        assert desk.mentions(needle) == 0, needle

    changes = desk.rows(
        "SELECT action, actor, before, after FROM changes"
        " WHERE entity_type = 'person' AND entity_id = :id ORDER BY id",
        id=person["id"],
    )
    assert [change.action for change in changes] == ["created", "updated", "erased"]
    assert all(c.before in (None, ERASED) and c.after in (None, ERASED) for c in changes)
    assert (changes[-1].actor, changes[-1].after) == (desk.admin_email(), ERASED)
    events = desk.rows(
        "SELECT type, version, payload FROM outbox WHERE aggregate_id = :id ORDER BY id",
        id=person["id"],
    )
    assert [(event.type, event.version) for event in events] == [
        ("contacts.person.created", 1),
        ("contacts.person.updated", 2),
        ("contacts.person.erased", 3),
    ]
    assert [event.payload for event in events[:2]] == [{"id": person["id"], **ERASED}] * 2
    assert events[-1].payload == {"id": person["id"], "email_sha256": _sha256(address)}
    assert desk.rows("SELECT 1 FROM roles WHERE person_id = :id", id=person["id"]) == []
    stored = desk.rows(
        "SELECT created_by FROM suppressions WHERE email_sha256 = :digest",
        digest=_sha256(address),
    )
    assert [row.created_by for row in stored] == [desk.admin_email()]


def test_notes_that_mention_the_address_or_the_full_name_are_listed_for_review(
    desk: Desk, make_org: Maker, make_person: Maker, make_premises: Maker
) -> None:
    """Free text is not edited by an erasure (a name may be someone else's too), but the
    records whose notes mention the address (in any case) or a person of it by their full
    name are listed: in the export, with the notes, and in the erasure's answer, by id."""
    tag, address = desk.tag, desk.address
    first, last = f"Zoraida{tag}", f"Quendt{tag}"
    shop = make_org(name=f"Werkstatt {tag}")
    make_person(first_name=first, last_name=last, email=address, roles=[role(shop, "owner")])
    neighbour = make_org(name=f"Nachbar {tag}", notes=f"Kontakt über {address.upper()} (privat)")
    landlord = make_org(kind="landlord", name=f"Vermieter {tag}")
    unit = make_premises(
        owner_id=landlord["id"], notes=f"{first.lower()} {last.lower()} will besichtigen"
    )
    # Only the last name, another person's address or name that holds theirs, and notes
    # about someone else: not listed.
    make_person(last_name=f"Kollege{tag}", notes=f"Vertritt Frau {last} im Urlaub")
    make_org(name=f"Anderer {tag}", notes="Ruft montags an")
    make_org(name=f"Dritter {tag}", notes=f"Kontakt: h{address}, Jo{first.lower()} {last}mann")

    def noted(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(entry["entity"], entry["id"]) for entry in entries]

    held = desk.held()["mentions"]
    assert noted(held) == [("organisation", neighbour["id"]), ("premises", unit["id"])]
    assert [(entry["label"], entry["notes"]) for entry in held] == [
        (neighbour["name"], neighbour["notes"]),
        ("Warnowallee", unit["notes"]),
    ]

    response = desk.erase()

    assert response.status_code == 200, response.get_json()
    assert noted(response.get_json()["notes_to_review"]) == noted(held)
    assert desk.get(f"/organisations/{neighbour['id']}").get_json()["notes"] == neighbour["notes"]
    # The person is gone, so only the address still finds a mention.
    assert noted(desk.held()["mentions"]) == [("organisation", neighbour["id"])]


def test_erasure_deletes_the_uploads_that_hold_the_address_and_archived_people(
    desk: Desk, make_person: Maker
) -> None:
    tag = desk.tag
    former = _archived_person(desk, make_person)
    holding = _upload(
        desk.client,
        desk.coordinator,
        f"Vorname;Nachname;Firma;E-Mail-Adresse\nAnna;Schmidt;Blumen {tag};"
        f"Anna.{tag}@Beispiel.Example\n".encode("cp1252"),
    ).get_json()
    # Another address that merely contains this one.
    other = _upload(
        desk.client,
        desk.coordinator,
        f"name;email\nKontor {tag};hanna.{tag}@beispiel.example\n".encode(),
    ).get_json()
    assert [upload["id"] for upload in desk.held()["imports"]] == [holding["id"]]

    body = desk.erase().get_json()

    assert (body["imports"], body["people"]) == (1, 1)
    assert desk.get(f"/people/{former['id']}").status_code == 404
    assert desk.get(f"/imports/{holding['id']}").status_code == 404
    assert desk.get(f"/imports/{other['id']}").status_code == 200
    assert desk.held()["imports"] == []


def test_erasing_an_address_the_register_does_not_hold_still_suppresses_it(desk: Desk) -> None:
    first = desk.erase()

    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    counts = ("people", "roles", "organisations", "imports", "history_entries", "events")
    assert [body[key] for key in counts] == [0] * len(counts)
    suppression = desk.held()["suppression"]
    assert suppression["created_by"] == desk.admin_email()
    assert suppression["created_at"] == body["suppressed_at"]
    again = desk.erase(desk.address.upper()).get_json()
    assert again["suppressed_at"] == body["suppressed_at"]  # when the person first asked


def test_every_erasure_tells_the_other_services_the_hash_of_the_address(
    desk: Desk, make_person: Maker
) -> None:
    """Newsletter and visits hold the address without a person of the register (a
    subscriber, a sign-up): one event per erasure, people or not, with the hash only."""
    digest = _sha256(desk.address)
    assert desk.erase().status_code == 200  # the register holds no one with it
    assert desk.lift().status_code == 204
    make_person(last_name=f"Schmidt{desk.tag}", email=desk.address)
    assert desk.erase(desk.address.upper()).status_code == 200  # one person this time
    events = desk.rows(
        "SELECT type, version, payload FROM outbox WHERE aggregate_id = :digest ORDER BY id",
        digest=digest,
    )
    assert [(event.type, event.version, event.payload) for event in events] == [
        ("contacts.address.erased", 1, {"email_sha256": digest}),
        ("contacts.address.erased", 2, {"email_sha256": digest}),
    ]
    person_events = desk.rows(
        "SELECT payload FROM outbox WHERE type = 'contacts.person.erased'"
        " AND payload->>'email_sha256' = :digest",
        digest=digest,
    )
    assert len(person_events) == 1  # and the person's own, as before


def test_a_suppressed_address_is_refused_by_the_api_until_an_admin_lifts_it(
    desk: Desk, make_org: Maker, make_person: Maker
) -> None:
    tag, address, client, headers = desk.tag, desk.address, desk.client, desk.coordinator
    org = make_org(name=f"Kontor {tag}")
    person = make_person(last_name=f"Schmidt{tag}")
    assert desk.erase().status_code == 200

    attempts = [
        client.post(
            "/api/v1/people",
            json={"last_name": "Schmidt", "email": address.upper()},
            headers=headers,
        ),
        client.post(
            "/api/v1/organisations",
            json={"kind": "business", "name": f"Neu {tag}", "email": address},
            headers=headers,
        ),
        client.patch(f"/api/v1/people/{person['id']}", json={"email": address}, headers=headers),
        client.patch(
            f"/api/v1/organisations/{org['id']}", json={"email": address}, headers=headers
        ),
    ]

    for response in attempts:
        assert response.status_code == 409, response.get_json()
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "suppressed"
        assert "Art. 17" in response.get_json()["detail"]
    assert desk.get("/people", email=address).get_json()["total"] == 0
    assert desk.lift(headers=desk.coordinator).status_code == 403

    assert desk.lift(address.upper()).status_code == 204

    assert desk.lift().status_code == 404
    assert desk.held()["suppression"] is None
    created = client.post(
        "/api/v1/people", json={"last_name": "Schmidt", "email": address}, headers=headers
    )
    assert created.status_code == 201, created.get_json()
    patched = client.patch(
        f"/api/v1/organisations/{org['id']}", json={"email": address}, headers=headers
    )
    assert patched.status_code == 200, patched.get_json()


def _contacts_csv(desk: Desk) -> bytes:
    """A person with the address, an organisation with it as its own, and a third row."""
    tag, address = desk.tag, desk.address
    return (
        "Vorname;Nachname;Firma;E-Mail-Adresse\n"
        f"Anna;Schmidt;Blumen {tag};{address.upper()}\n"
        f";;Kontor {tag};{address}\n"
        f"Bernd;Berndt;Werkstatt {tag};bernd.{tag}@beispiel.example\n"
    ).encode()


def _refused_lines(body: dict[str, Any]) -> list[tuple[int, list[str]]]:
    return [(error["line"], list(error["errors"])) for error in body["errors"]]


def test_the_import_refuses_a_suppressed_address_at_the_preview(desk: Desk) -> None:
    assert desk.erase().status_code == 200

    preview = _upload(desk.client, desk.coordinator, _contacts_csv(desk))

    assert preview.status_code == 201, preview.get_json()
    body = preview.get_json()
    assert (body["valid_rows"], body["invalid_rows"], body["created_count"]) == (1, 2, 1)
    assert _refused_lines(body) == [(2, ["email"]), (3, ["email"])]
    assert body["errors"][0]["errors"]["email"] == [suppressions.IMPORT_REFUSAL]
    committed = _commit(desk.client, desk.coordinator, body["id"]).get_json()
    assert (committed["status"], committed["created_count"]) == ("committed", 1)
    held = desk.held()
    assert (held["people"], held["organisations"]) == ([], [])

    assert desk.lift().status_code == 204
    again = _upload(desk.client, desk.coordinator, _contacts_csv(desk)).get_json()
    assert (again["valid_rows"], again["invalid_rows"]) == (3, 0)


@pytest.mark.parametrize("mode", ["valid_only", "all_or_nothing"])
def test_the_commit_refuses_an_address_suppressed_after_the_preview(desk: Desk, mode: str) -> None:
    preview = _upload(desk.client, desk.coordinator, _contacts_csv(desk)).get_json()
    assert (preview["valid_rows"], preview["invalid_rows"]) == (3, 0)
    # Suppressed while the file waits for its commit (an erasure deletes the uploads it
    # finds, so only one made meanwhile is left to be committed).
    with get_database(desk.app).session() as session:
        suppressions.suppress(session, _sha256(desk.address), actor="dsb@beispiel.example")
        session.commit()

    response = _commit(desk.client, desk.coordinator, preview["id"], mode=mode)

    if mode == "all_or_nothing":
        assert response.status_code == 422, response.get_json()
    else:
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert (body["status"], body["created_count"]) == ("committed", 1)
        assert _refused_lines(body) == [(2, ["email"]), (3, ["email"])]
    held = desk.held()
    assert (held["people"], held["organisations"]) == ([], [])


@pytest.mark.parametrize("who", ["viewer", "coordinator"])
def test_only_admins_export_erase_and_lift(
    desk: Desk, request: pytest.FixtureRequest, make_person: Maker, who: str
) -> None:
    person = make_person(last_name=f"Schmidt{desk.tag}", email=desk.address)
    headers = request.getfixturevalue(who)

    assert desk.export(headers=headers).status_code == 403
    assert desk.erase(headers=headers).status_code == 403
    assert desk.lift(headers=headers).status_code == 403
    assert desk.export(headers={}).status_code == 401

    assert desk.get(f"/people/{person['id']}").get_json()["email"] == desk.address
    assert desk.held()["suppression"] is None


@pytest.mark.parametrize("email", ["keine-adresse", "", "anna@", None])
def test_an_invalid_address_is_a_422_naming_email(
    contacts_client: FlaskClient, admin: dict[str, str], email: str | None
) -> None:
    query = {} if email is None else {"email": email}
    responses = [
        contacts_client.get("/api/v1/privacy/export", query_string=query, headers=admin),
        contacts_client.post("/api/v1/privacy/erasures", json=query, headers=admin),
        contacts_client.delete("/api/v1/privacy/suppressions", query_string=query, headers=admin),
    ]
    for response in responses:
        assert response.status_code == 422, response.get_json()
        assert response.mimetype == "application/problem+json"
        assert list(response.get_json()["errors"]) == ["email"]


def test_an_erasure_takes_turns_with_a_person_created_with_the_address(
    desk: Desk, make_org: Maker
) -> None:
    """The create holds the address (shared) while it waits for the organisation; the
    erasure waits for it, then finds the person and erases them too."""
    org = make_org(name=f"Kontor {desk.tag}")
    body = {"last_name": f"Schmidt{desk.tag}", "email": desk.address, "roles": [role(org, "owner")]}

    created, erased = overlapping(
        desk.app,
        [
            lambda c: c.post("/api/v1/people", json=body, headers=desk.coordinator),
            lambda c: _erase(c, desk.admin, desk.address),
        ],
        LOCK_ORGANISATION,
        id=org["id"],
    )

    assert (created.status_code, erased.status_code) == (201, 200), erased.get_json()
    assert erased.get_json()["people"] == 1
    assert desk.get(f"/people/{created.get_json()['id']}").status_code == 404


def test_an_erasure_takes_turns_with_an_import_that_holds_the_address(
    desk: Desk, make_org: Maker
) -> None:
    """The commit waits for an organisation it matches; the erasure waits for the commit,
    then erases the person it created and deletes the upload."""
    tag = desk.tag
    matched = make_org(name=f"Kontor {tag}", street="Warnowallee", house_number="20")
    content = (
        "Vorname;Nachname;Firma;Straße;Hausnummer;E-Mail-Adresse\n"
        f";;Kontor {tag};Warnowallee;20;\n"
        f"Anna;Schmidt{tag};Blumen {tag};;;{desk.address}\n"
    ).encode()
    preview = _upload(desk.client, desk.coordinator, content).get_json()
    assert (preview["valid_rows"], preview["created_count"]) == (2, 1)

    committed, erased = overlapping(
        desk.app,
        [
            lambda c: _commit(c, desk.coordinator, preview["id"]),
            lambda c: _erase(c, desk.admin, desk.address),
        ],
        LOCK_ORGANISATION,
        id=matched["id"],
    )

    assert committed.get_json()["status"] == "committed", committed.get_json()
    assert (erased.get_json()["people"], erased.get_json()["imports"]) == (1, 1)
    assert desk.get("/people", email=desk.address).get_json()["total"] == 0
    assert desk.get(f"/imports/{preview['id']}").status_code == 404


def test_an_erasure_takes_turns_with_a_merge_that_gives_the_survivor_the_address(
    desk: Desk, make_org: Maker
) -> None:
    """The merge holds the address of the organisation it absorbs (shared) before it locks
    the two; the erasure waits for it, then finds the survivor with the address too and
    clears both."""
    absorbed = make_org(name=f"Kontor {desk.tag}", email=desk.address)
    survivor = make_org(name=f"Kontor {desk.tag} GmbH")

    merged, erased = overlapping(
        desk.app,
        [
            merging(survivor["id"], absorbed["id"], desk.coordinator),
            lambda c: _erase(c, desk.admin, desk.address),
        ],
        LOCK_ORGANISATION,
        id=absorbed["id"],
    )

    assert (merged.status_code, erased.status_code) == (200, 200), merged.get_json()
    assert merged.get_json()["email"] == desk.address
    assert erased.get_json()["organisations"] == 2
    for org in (survivor, absorbed):
        assert desk.get(f"/organisations/{org['id']}").get_json()["email"] is None
    assert desk.mentions(desk.address) == 0


def test_a_lift_takes_turns_with_an_erasure_of_the_address(desk: Desk, make_org: Maker) -> None:
    """The lift waits for the erasure's lock on the address: it never runs between the
    erasure storing the suppression (or finding it stored) and reading it back, which
    answered 500, and it lifts the suppression the erasure made."""
    org = make_org(name=f"Kontor {desk.tag}", email=desk.address)
    assert desk.erase().status_code == 200
    assert desk.lift().status_code == 204
    again = make_org(name=f"Kontor {desk.tag} neu", email=desk.address)

    erased, lifted = overlapping(
        desk.app,
        [
            lambda c: _erase(c, desk.admin, desk.address),
            lambda c: _lift(c, desk.admin, desk.address),
        ],
        LOCK_ORGANISATION,
        id=again["id"],
    )

    assert (erased.status_code, lifted.status_code) == (200, 204), erased.get_json()
    assert desk.held()["suppression"] is None
    assert desk.get(f"/organisations/{org['id']}").get_json()["email"] is None


def test_an_address_written_decomposed_is_the_same_address(desk: Desk, make_person: Maker) -> None:
    """An address with an umlaut as macOS writes it (NFD: ``a`` and a combining diaeresis)
    is the address typed with ``ä`` (NFC): the erasure finds the person, the upload that
    holds it, and the suppression refuses it in either form."""
    typed = f"anna.{desk.tag}@bäckerei.example"
    decomposed = unicodedata.normalize("NFD", typed)
    assert decomposed != typed
    person = make_person(last_name=f"Bäcker{desk.tag}", email=decomposed)
    upload = _upload(
        desk.client, desk.coordinator, f"name;email\nBäckerei {desk.tag};{decomposed}\n".encode()
    ).get_json()
    assert upload["valid_rows"] == 1, upload

    body = desk.erase(typed).get_json()

    assert (body["people"], body["imports"]) == (1, 1), body
    assert desk.get(f"/people/{person['id']}").status_code == 404
    refused = desk.client.post(
        "/api/v1/people", json={"last_name": "Neu", "email": decomposed}, headers=desk.coordinator
    )
    assert refused.status_code == 409, refused.get_json()
