"""Staff users: signing in tells nothing apart, and there is always an active admin.

The rule of the last admin counts every admin of the register, so its tests run on a
contacts database of their own, where they know all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from services.contacts import services as contacts_services
from shared.auth import hash_password
from shared.db import get_database
from shared.migrations import upgrade
from shared.settings import Settings
from shared.testing import Engines, auth, own_database, unique_email

from ..visits.helpers import close_app
from .concurrency import overlapping, statuses, unhindered

PASSWORD = "lang-genug-123"


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def test_unknown_disabled_and_wrong_password_sign_ins_get_one_answer_after_one_check(
    contacts_client: FlaskClient, staff_token: Callable[[str], str], monkeypatch: Any
) -> None:
    """The same 401, and each after one password check: a disabled account skipped it and
    answered sooner than a wrong password, which told disabled accounts apart."""
    admin = auth(staff_token("admin"))
    disabled, active = unique_email("disabled"), unique_email("active")
    for email in (disabled, active):
        body = {"email": email, "role": "viewer", "password": PASSWORD}
        assert contacts_client.post("/api/v1/users", json=body, headers=admin).status_code == 201
    user_id = next(
        u["id"]
        for u in contacts_client.get("/api/v1/users", headers=admin).get_json()
        if u["email"] == disabled
    )
    patched = contacts_client.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin
    )
    assert patched.status_code == 200

    checks: list[str] = []
    verify = contacts_services.verify_password

    def counted(password_hash: str, password: str) -> bool:
        checks.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(contacts_services, "verify_password", counted)
    answers = []
    for email, password in (
        (unique_email("nobody"), PASSWORD),
        (disabled, PASSWORD),  # the right password of a disabled account
        (active, "falsches-passwort"),
    ):
        checks.clear()
        response = contacts_client.post(
            "/api/v1/auth/token", json={"email": email, "password": password}
        )
        assert response.status_code == 401
        assert len(checks) == 1, email
        answers.append(
            (response.get_json(), response.mimetype, response.headers["WWW-Authenticate"])
        )
    assert answers[0] == answers[1] == answers[2]
    checks.clear()
    assert sign_in(contacts_client, active)
    assert len(checks) == 1


def test_an_admin_who_demoted_and_disabled_themselves_cannot_undo_it_with_their_token(
    contacts_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    other_admin = auth(staff_token("admin"))
    email = unique_email("admin")
    body = {"email": email, "role": "admin", "password": PASSWORD}
    created = contacts_client.post("/api/v1/users", json=body, headers=other_admin)
    path = f"/api/v1/users/{created.get_json()['id']}"
    own = auth(sign_in(contacts_client, email))

    step_down = contacts_client.patch(
        path, json={"role": "viewer", "is_active": False}, headers=own
    )
    assert step_down.status_code == 200, step_down.get_json()
    back = contacts_client.patch(path, json={"role": "admin", "is_active": True}, headers=own)
    assert back.status_code == 401
    assert back.mimetype == "application/problem+json"
    assert "sign in again" in back.get_json()["detail"]
    stored = contacts_client.get(path, headers=other_admin).get_json()
    assert (stored["role"], stored["is_active"]) == ("viewer", False)


def test_a_sign_in_during_a_role_change_gets_a_working_token_of_the_new_role(
    contacts_app: Flask, contacts_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    """The sign-in queues behind the change (both lock the user's row): its token carries
    the new role and the new generation. Had it read the row before the change and the
    generation during it, it would hold a token of the old role that still works; had it
    read both before, a token refused as revoked right after it was issued."""
    admin = auth(staff_token("admin"))
    email = unique_email("coordinator")
    body = {"email": email, "role": "coordinator", "password": PASSWORD}
    user_id = contacts_client.post("/api/v1/users", json=body, headers=admin).get_json()["id"]
    change, sign_in_ = overlapping(
        contacts_app,
        [
            lambda c: c.patch(f"/api/v1/users/{user_id}", json={"role": "viewer"}, headers=admin),
            lambda c: c.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD}),
        ],
        "SELECT 1 FROM users WHERE id = :id FOR UPDATE",
        id=user_id,
    )
    assert (change.status_code, sign_in_.status_code) == (200, 200)
    assert sign_in_.get_json()["role"] == "viewer"
    me = contacts_client.get("/api/v1/me", headers=auth(sign_in_.get_json()["access_token"]))
    assert (me.status_code, me.get_json()["role"]) == (200, "viewer")


LOCK_USER = "SELECT 1 FROM users WHERE id = :id FOR UPDATE"


def _new_user(client: FlaskClient, admin: dict[str, str], **fields: Any) -> tuple[str, str]:
    """(id, email) of a new viewer whose password is PASSWORD."""
    email = unique_email("viewer")
    body = {"email": email, "role": "viewer", "password": PASSWORD, **fields}
    response = client.post("/api/v1/users", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"], email


@pytest.mark.parametrize("disabled", [False, True], ids=["wrong password", "disabled account"])
def test_a_refused_sign_in_checks_the_password_without_waiting_for_the_users_row(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    staff_token: Callable[[str], str],
    disabled: bool,
) -> None:
    """The hash check is slow on purpose. It held the user's row lock, so a flood of
    wrong passwords for one address queued that user's sign-ins (and changes) behind each
    other; now it holds no lock, and only a right password locks the row, briefly."""
    admin = auth(staff_token("admin"))
    user_id, email = _new_user(contacts_client, admin)
    password = "falsches-passwort"
    if disabled:
        patched = contacts_client.patch(
            f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin
        )
        assert patched.status_code == 200
        password = PASSWORD
    refused = unhindered(  # a change of the user, say, holds the row meanwhile
        contacts_app,
        lambda c: c.post("/api/v1/auth/token", json={"email": email, "password": password}),
        LOCK_USER,
        id=user_id,
    )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("UPDATE users SET is_active = false WHERE id = :id", 401),
        # A new password, set by an admin meanwhile.
        ("UPDATE users SET password_hash = :other WHERE id = :id", 401),
        # The same password hashed anew (another sign-in's rehash).
        ("UPDATE users SET password_hash = :same WHERE id = :id", 200),
    ],
    ids=["deactivated", "new password", "rehashed"],
)
def test_a_sign_in_rechecks_under_the_row_lock_what_changed_since_its_password_check(
    contacts_app: Flask,
    contacts_client: FlaskClient,
    staff_token: Callable[[str], str],
    change: str,
    status: int,
) -> None:
    """The sign-in checks the password, then waits for the row, which a change holds; the
    change lands. Under the lock the account must still be active and its hash the one
    the password was checked against; a new hash is checked once more."""
    admin = auth(staff_token("admin"))
    user_id, email = _new_user(contacts_client, admin)
    [answer] = overlapping(
        contacts_app,
        [lambda c: c.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})],
        change,
        commit=True,
        id=user_id,
        other=hash_password("ein-anderes-passwort"),
        same=hash_password(PASSWORD),
    )
    assert answer.status_code == status, answer.get_json()
    if status == 200:
        me = contacts_client.get("/api/v1/me", headers=auth(answer.get_json()["access_token"]))
        assert me.status_code == 200


@pytest.fixture(scope="module")
def register(engines: Engines, make_settings: Callable[..., Settings]) -> Iterator[Flask]:
    """A contacts app on a database of its own."""
    from services.contacts.app import create_app

    with own_database(engines, "contacts", "users") as url:
        upgrade("contacts", url)
        app = create_app(make_settings("contacts", database_url=url))
        app.config["TESTING"] = True
        try:
            yield app
        finally:
            close_app(app)


@pytest.fixture
def admins(register: Flask) -> Callable[[int], list[tuple[str, dict[str, str]]]]:
    """``n`` admins, the only active users of the register: (id, headers with a token)."""

    def make(n: int) -> list[tuple[str, dict[str, str]]]:
        made = []
        with get_database(register).session() as session:
            session.execute(text("UPDATE users SET is_active = false"))
            session.commit()
            for _ in range(n):
                email = unique_email("admin")
                user = contacts_services.create_user(
                    session, email=email, role="admin", password=PASSWORD
                )
                made.append((str(user.id), email))
        client = register.test_client()
        return [(user_id, auth(sign_in(client, email))) for user_id, email in made]

    return make


def active_admins(app: Flask) -> list[str]:
    with get_database(app).session() as session:
        return [
            str(user_id)
            for user_id in session.scalars(
                text("SELECT id FROM users WHERE role = 'admin' AND is_active")
            )
        ]


@pytest.mark.parametrize("change", [{"role": "coordinator"}, {"is_active": False}])
def test_the_last_active_admin_cannot_demote_or_disable_themselves(
    register: Flask, admins: Callable[[int], list[tuple[str, dict[str, str]]]], change: dict
) -> None:
    [(admin_id, admin)] = admins(1)
    client = register.test_client()
    refused = client.patch(f"/api/v1/users/{admin_id}", json=change, headers=admin)
    assert refused.status_code == 409
    assert refused.mimetype == "application/problem+json"
    assert "no active admin" in refused.get_json()["detail"]
    assert refused.get_json()["code"] == "last_admin"
    assert active_admins(register) == [admin_id]
    # Nothing changed, so the token still works; with a second admin the change is fine.
    successor = client.post(
        "/api/v1/users",
        json={"email": unique_email(), "role": "admin", "password": PASSWORD},
        headers=admin,
    )
    assert successor.status_code == 201
    assert client.patch(f"/api/v1/users/{admin_id}", json=change, headers=admin).status_code == 200
    assert active_admins(register) == [successor.get_json()["id"]]


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    register: Flask, admins: Callable[[int], list[tuple[str, dict[str, str]]]]
) -> None:
    """Both requests wait behind a lock on both rows, then run: the second sees the first's
    change. Before the rule both succeeded and no admin was left."""
    (first_id, first), (second_id, second) = admins(2)
    responses = overlapping(
        register,
        [
            lambda c: c.patch(f"/api/v1/users/{second_id}", json={"role": "viewer"}, headers=first),
            lambda c: c.patch(
                f"/api/v1/users/{first_id}", json={"is_active": False}, headers=second
            ),
        ],
        "SELECT 1 FROM users WHERE id IN (:a, :b) FOR UPDATE",
        a=first_id,
        b=second_id,
    )
    assert statuses(responses) == [200, 409]
    assert responses[1].get_json()["code"] == "last_admin"
    assert active_admins(register) == [first_id]
