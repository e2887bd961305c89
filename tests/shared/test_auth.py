"""Staff users, tokens and roles across the three services; signed links for mails."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
import pytest
from flask import Flask

from shared.auth import (
    LinkError,
    decode_token,
    hash_password,
    issue_token,
    load_link,
    service_token,
    sign_link,
    verify_password,
)
from shared.settings import SERVICES
from shared.testing import auth, unique_email


def test_admin_creates_coordinator_who_signs_in_and_is_refused_admin_work(
    contacts_client, staff_token
) -> None:
    admin = staff_token("admin")
    email = unique_email("coordinator")
    created = contacts_client.post(
        "/api/v1/users",
        json={
            "email": email,
            "role": "coordinator",
            "password": "lang-genug-123",
            "name": "Jana Groß",
        },
        headers=auth(admin),
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["role"] == "coordinator"
    assert "password" not in created.get_json()
    # Shown in Europe/Berlin, as every time the contacts service shows.
    offset = datetime.fromisoformat(created.get_json()["created_at"]).utcoffset()
    assert offset in (timedelta(hours=1), timedelta(hours=2))

    token = contacts_client.post(
        "/api/v1/auth/token", json={"email": email.upper(), "password": "lang-genug-123"}
    )
    assert token.status_code == 200
    coordinator = token.get_json()["access_token"]

    me = contacts_client.get("/api/v1/me", headers=auth(coordinator))
    assert me.get_json()["role"] == "coordinator"
    assert me.get_json()["email"] == email

    refused = contacts_client.post(
        "/api/v1/users",
        json={"email": unique_email(), "role": "admin", "password": "lang-genug-123"},
        headers=auth(coordinator),
    )
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert contacts_client.get("/api/v1/users", headers=auth(coordinator)).status_code == 403


def test_duplicate_user_is_409(contacts_client, staff_token) -> None:
    admin = staff_token("admin")
    body = {"email": unique_email(), "role": "viewer", "password": "lang-genug-123"}
    assert contacts_client.post("/api/v1/users", json=body, headers=auth(admin)).status_code == 201
    again = contacts_client.post("/api/v1/users", json=body, headers=auth(admin))
    assert again.status_code == 409


def test_wrong_password_and_disabled_account_get_401(contacts_client, staff_token) -> None:
    admin = staff_token("admin")
    email = unique_email()
    user = contacts_client.post(
        "/api/v1/users",
        json={"email": email, "role": "viewer", "password": "lang-genug-123"},
        headers=auth(admin),
    ).get_json()
    wrong = contacts_client.post("/api/v1/auth/token", json={"email": email, "password": "nope"})
    assert wrong.status_code == 401
    contacts_client.patch(
        f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=auth(admin)
    )
    disabled = contacts_client.post(
        "/api/v1/auth/token", json={"email": email, "password": "lang-genug-123"}
    )
    assert disabled.status_code == 401


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_rejects_forged_expired_and_missing_tokens(
    apps: dict[str, Flask], service: str, secret_key: str
) -> None:
    client = apps[service].test_client()
    forged = issue_token("not-the-secret" * 4, subject="x", role="admin", ttl=timedelta(hours=1))
    expired = issue_token(secret_key, subject="x", role="admin", ttl=timedelta(seconds=-60))
    tampered = jwt.encode({"sub": "x", "role": "admin"}, secret_key, algorithm="HS256")
    for headers in (auth(forged), auth(expired), auth(tampered), auth("garbage"), {}):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "expired" in client.get("/api/v1/me", headers=auth(expired)).get_json()["detail"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_accepts_staff_and_service_tokens(
    apps: dict[str, Flask], service: str, staff_token, secret_key: str
) -> None:
    client = apps[service].test_client()
    viewer = client.get("/api/v1/me", headers=auth(staff_token("viewer")))
    assert viewer.status_code == 200 and viewer.get_json()["role"] == "viewer"
    caller = client.get("/api/v1/me", headers=auth(service_token(secret_key, "newsletter")))
    assert caller.get_json() == {"subject": "service:newsletter", "role": "service", "email": None}


def test_tokens_carry_only_known_roles(secret_key: str) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        issue_token(secret_key, subject="x", role="root", ttl=timedelta(minutes=1))
    token = jwt.encode(
        {
            "sub": "x",
            "role": "root",
            "iss": "quartier",
            "aud": "quartier-api",
            "iat": 1,
            "exp": 4102444800,
        },
        secret_key,
        algorithm="HS256",
    )
    with pytest.raises(Exception, match="role"):
        decode_token(secret_key, token)


def test_password_hashes_verify_only_the_right_password() -> None:
    hashed = hash_password("Straßenbahn-2026")
    assert hashed.startswith("$argon2")
    assert verify_password(hashed, "Straßenbahn-2026")
    assert not verify_password(hashed, "strassenbahn-2026")
    assert not verify_password("not a hash", "x")


def test_signed_links_are_purpose_scoped_expiring_and_tamper_proof(secret_key: str) -> None:
    token = sign_link(secret_key, "confirm", {"registration": 42})
    assert load_link(secret_key, "confirm", token, timedelta(days=1)) == {"registration": 42}
    with pytest.raises(LinkError):
        load_link(secret_key, "cancel", token, timedelta(days=1))
    with pytest.raises(LinkError):
        load_link(secret_key, "confirm", token[:-2] + "xx", timedelta(days=1))
    with pytest.raises(LinkError) as expired:
        load_link(secret_key, "confirm", token, timedelta(seconds=-1))
    assert expired.value.expired
