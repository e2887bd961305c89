"""Staff users: signing in tells nothing apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from services.contacts import services as contacts_services
from shared.testing import auth, unique_email

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
