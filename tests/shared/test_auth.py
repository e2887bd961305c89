"""Staff users, tokens and roles across the three services; signed links for mails."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from services.contacts import services as contacts_services
from shared.auth import (
    REVOCATION_CACHE_SECONDS,
    LinkError,
    TokenRevocations,
    decode_token,
    hash_password,
    issue_token,
    load_link,
    service_token,
    sign_link,
    verify_password,
)
from shared.db import get_database
from shared.net import free_port
from shared.problems import ServiceUnavailable
from shared.settings import SERVICES, Settings
from shared.testing import Engines, auth, unique_email

from ..visits.helpers import close_app


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


# Revocation: a change to a user reaches the tokens they hold, on every service.

PASSWORD = "lang-genug-123"


def _user(client: FlaskClient, admin: dict[str, str], role: str) -> tuple[str, str]:
    """A new user of ``role``: their id and a token from signing in."""
    email = unique_email(role)
    body = {"email": email, "role": role, "password": PASSWORD}
    created = client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"], _sign_in(client, email)


def _sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def _refused_as_revoked(response: Any) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert "revoked" in response.get_json()["detail"]


def test_a_deactivated_users_token_is_refused_by_every_service(
    contacts_client: FlaskClient,
    visits_client: FlaskClient,
    newsletter_client: FlaskClient,
    staff_token: Callable[[str], str],
) -> None:
    admin = auth(staff_token("admin"))
    user_id, token = _user(contacts_client, admin, "viewer")
    assert contacts_client.get("/api/v1/organisations", headers=auth(token)).status_code == 200

    patched = contacts_client.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin
    )
    assert patched.status_code == 200
    _refused_as_revoked(contacts_client.get("/api/v1/organisations", headers=auth(token)))
    _refused_as_revoked(visits_client.get("/api/v1/trainings", headers=auth(token)))
    _refused_as_revoked(newsletter_client.get("/api/v1/me", headers=auth(token)))

    # Active again, the user signs in anew; the old token stays void.
    contacts_client.patch(f"/api/v1/users/{user_id}", json={"is_active": True}, headers=admin)
    _refused_as_revoked(visits_client.get("/api/v1/me", headers=auth(token)))
    email = contacts_client.get(f"/api/v1/users/{user_id}", headers=admin).get_json()["email"]
    fresh = auth(_sign_in(contacts_client, email))
    assert visits_client.get("/api/v1/trainings", headers=fresh).status_code == 200


def test_a_new_role_voids_the_old_token_and_a_token_issued_right_after_it_works(
    contacts_client: FlaskClient, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    """The new sign-in follows the change within the same second: both are told apart.
    (Each service caches a lookup for a few seconds, so visits, once asked, is asked only
    about the first change here; contacts, which makes them, knows each at once.)"""
    admin = auth(staff_token("admin"))
    user_id, token = _user(contacts_client, admin, "coordinator")
    path = f"/api/v1/users/{user_id}"
    email = contacts_client.get(path, headers=admin).get_json()["email"]
    body = {"kind": "business", "name": f"Betrieb {uuid.uuid4().hex[:8]}"}
    made = contacts_client.post("/api/v1/organisations", json=body, headers=auth(token))
    assert made.status_code == 201

    assert contacts_client.patch(path, json={"role": "viewer"}, headers=admin).status_code == 200
    _refused_as_revoked(
        contacts_client.post("/api/v1/organisations", json=body, headers=auth(token))
    )
    _refused_as_revoked(visits_client.get("/api/v1/trainings", headers=auth(token)))
    token = _sign_in(contacts_client, email)
    me = visits_client.get("/api/v1/me", headers=auth(token))
    assert (me.status_code, me.get_json()["role"]) == (200, "viewer")
    refused = contacts_client.post("/api/v1/organisations", json=body, headers=auth(token))
    assert refused.status_code == 403

    for role in ("coordinator", "viewer", "admin"):
        assert contacts_client.patch(path, json={"role": role}, headers=admin).status_code == 200
        _refused_as_revoked(contacts_client.get("/api/v1/me", headers=auth(token)))
        token = _sign_in(contacts_client, email)
        me = contacts_client.get("/api/v1/me", headers=auth(token))
        assert (me.status_code, me.get_json()["role"]) == (200, role)


def test_a_new_password_voids_the_old_token_and_a_new_name_does_not(
    contacts_client: FlaskClient, newsletter_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    admin = auth(staff_token("admin"))
    user_id, token = _user(contacts_client, admin, "viewer")
    path = f"/api/v1/users/{user_id}"
    # Neither the name nor the same role again is a change that voids tokens.
    assert (
        contacts_client.patch(path, json={"name": "Jördis Weiß"}, headers=admin).status_code == 200
    )
    assert contacts_client.patch(path, json={"role": "viewer"}, headers=admin).status_code == 200
    assert contacts_client.get("/api/v1/me", headers=auth(token)).status_code == 200

    new_password = "ein-anderes-passwort"
    assert (
        contacts_client.patch(path, json={"password": new_password}, headers=admin).status_code
        == 200
    )
    _refused_as_revoked(contacts_client.get("/api/v1/me", headers=auth(token)))
    _refused_as_revoked(newsletter_client.get("/api/v1/me", headers=auth(token)))
    email = contacts_client.get(path, headers=admin).get_json()["email"]
    fresh = _sign_in(contacts_client, email, new_password)
    assert newsletter_client.get("/api/v1/me", headers=auth(fresh)).status_code == 200


def test_other_processes_learn_of_a_revocation_when_their_cached_lookup_lapses(
    engines: Engines,
) -> None:
    """Lookups are cached a few seconds per process; the process that revokes knows at once.
    Two instances stand for two processes, on the real Redis; their clock is the test's."""
    client = redis.Redis.from_url(engines.redis_url)
    now = [0.0]
    here = TokenRevocations(client, timer=lambda: now[0])
    there = TokenRevocations(client, timer=lambda: now[0])
    subject = str(uuid.uuid4())
    try:
        assert there.current(subject) == 0
        assert here.for_new_token(subject) == 0
        assert here.revoke(subject) == 1
        assert here.current(subject) == 1
        assert there.current(subject) == 0  # still cached
        now[0] += REVOCATION_CACHE_SECONDS
        assert there.current(subject) == 1
    finally:
        client.delete(TokenRevocations.key(subject))
        client.close()


def test_a_shorter_token_lifetime_lets_no_revoked_token_of_the_longer_one_back(
    engines: Engines,
    make_settings: Callable[..., Settings],
    contacts_client: FlaskClient,
    staff_token: Callable[[str], str],
) -> None:
    """A generation's key expired a token lifetime, as configured at the last sign-in or
    change, after it: once the operator shortened TOKEN_TTL_SECONDS, the next sign-in set
    the key to lapse in seconds, and with it went the revocation of a token issued for 8
    hours. Now the key never lapses (and one left with an expiry is made permanent)."""
    from services.contacts.app import create_app

    admin = auth(staff_token("admin"))
    user_id, token = _user(contacts_client, admin, "coordinator")  # for 8 hours
    path = f"/api/v1/users/{user_id}"
    assert contacts_client.patch(path, json={"role": "viewer"}, headers=admin).status_code == 200
    email = contacts_client.get(path, headers=admin).get_json()["email"]
    client = redis.Redis.from_url(engines.redis_url)
    key = TokenRevocations.key(user_id)
    short = create_app(make_settings("contacts", token_ttl_seconds=60))
    try:
        signed_in = short.test_client().post(
            "/api/v1/auth/token", json={"email": email, "password": PASSWORD}
        )
        assert signed_in.get_json()["expires_in"] == 60
        assert client.ttl(key) == -1  # kept, without an expiry
        client.expire(key, 30)  # as an older version left it
        back = short.test_client().patch(path, json={"role": "coordinator"}, headers=admin)
        assert back.status_code == 200
        assert client.ttl(key) == -1
        _refused_as_revoked(short.test_client().get("/api/v1/me", headers=auth(token)))
    finally:
        close_app(short)
        client.close()


def test_without_redis_staff_tokens_get_503_and_a_change_is_not_made(
    make_settings: Callable[..., Settings],
    contacts_app: Flask,
    staff_token: Callable[[str], str],
    secret_key: str,
) -> None:
    """A token that may have been revoked is never let through unchecked; service tokens
    are no users' and need no lookup."""
    from services.visits.app import create_app

    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(make_settings("visits", redis_url=dead))
    try:
        client = app.test_client()
        refused = client.get("/api/v1/me", headers=auth(staff_token("admin")))
        assert refused.status_code == 503
        assert refused.mimetype == "application/problem+json"
        assert refused.headers["Retry-After"]
        caller = client.get("/api/v1/me", headers=auth(service_token(secret_key, "contacts")))
        assert caller.status_code == 200
    finally:
        close_app(app)

    dead_client = redis.Redis.from_url(dead, socket_connect_timeout=2)
    with get_database(contacts_app).session() as session:
        user = contacts_services.create_user(
            session, email=unique_email(), role="coordinator", password=PASSWORD
        )
        with pytest.raises(ServiceUnavailable):
            contacts_services.update_user(
                session, TokenRevocations(dead_client), user.id, role="viewer"
            )
    with get_database(contacts_app).session() as session:
        assert contacts_services.get_user(session, user.id).role == "coordinator"
