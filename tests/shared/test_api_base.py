"""The API base every service shares: health, OpenAPI, Swagger UI offline, problem+json."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from shared.net import free_port
from shared.settings import SERVICES, Settings

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("service", SERVICES)
def test_health_and_readiness(apps: dict[str, Flask], service: str) -> None:
    client = apps[service].test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readiness_is_503_when_redis_is_down(make_settings: Callable[..., Settings]) -> None:
    from services.visits.app import create_app

    app = create_app(make_settings("visits", redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    assert response.headers["Retry-After"]
    assert response.get_json()["checks"]["database"] == "ok"
    assert response.get_json()["checks"]["redis"].startswith("unavailable")


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_document_and_offline_swagger_ui(apps: dict[str, Flask], service: str) -> None:
    client = apps[service].test_client()
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/me" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # Every asset the page loads is served by the service itself: no outside request.
    assert "https://" not in html and "http://" not in html
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f'/api/docs/assets/{asset}"' in html
        with client.get(f"/api/docs/assets/{asset}") as served:
            assert served.status_code == 200
            assert len(served.get_data()) > 1000


def test_unknown_route_is_404_problem(contacts_client) -> None:
    response = contacts_client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/no-such-thing"


def test_wrong_method_is_405_problem_with_allow(contacts_client) -> None:
    response = contacts_client.delete("/api/v1/auth/token")
    assert response.status_code == 405
    assert response.mimetype == PROBLEM
    assert "POST" in response.headers["Allow"]


def test_body_that_is_not_json_is_415(contacts_client) -> None:
    response = contacts_client.post(
        "/api/v1/auth/token", data="email=a@b.de", content_type="text/plain"
    )
    assert response.status_code == 415
    assert response.mimetype == PROBLEM


def test_malformed_json_is_400(contacts_client) -> None:
    response = contacts_client.post(
        "/api/v1/auth/token", data='{"email": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.mimetype == PROBLEM


def test_invalid_fields_are_422_with_field_messages(contacts_client) -> None:
    response = contacts_client.post("/api/v1/auth/token", json={"email": "not-an-address"})
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    errors = response.get_json()["errors"]
    assert "email" in errors
    assert "password" in errors


def test_text_no_database_can_hold_is_422_naming_the_field(
    contacts_client, staff_token: Callable[[str], str]
) -> None:
    """NUL characters and unpaired surrogates (which JSON allows) in a body or a query."""
    headers = {"Authorization": f"Bearer {staff_token('admin')}"}
    answers = {
        "body NUL": contacts_client.post(
            "/api/v1/organisations",
            json={"kind": "business", "name": "Bäckerei\x00", "tags": ["ok", "a\x00b"]},
            headers=headers,
        ),
        "body surrogate": contacts_client.post(
            "/api/v1/users",
            data='{"email": "x@example.org", "password": "lang-genug-123", "role": "viewer",'
            ' "name": "\\ud8b6 Erika"}',
            content_type="application/json",
            headers=headers,
        ),
        "query NUL": contacts_client.get(
            "/api/v1/organisations?district=Gro%C3%9F%00Klein&tags=a&tags=b%00", headers=headers
        ),
    }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 422)
    assert all(a.mimetype == PROBLEM for a in answers.values())
    errors = {name: a.get_json()["errors"] for name, a in answers.items()}
    assert set(errors["body NUL"]) == {"name", "tags.1"}
    assert set(errors["body surrogate"]) == {"name"}
    assert set(errors["query NUL"]) == {"district", "tags"}
    assert "NUL" in errors["query NUL"]["district"][0]


@pytest.mark.parametrize(
    ("service", "path"),
    [("contacts", "/api/v1/organisations"), ("visits", "/api/v1/visits"),
     ("newsletter", "/api/v1/campaigns"), ("newsletter", "/api/v1/subscribers")],
)  # fmt: skip
def test_a_page_beyond_any_offset_is_empty(
    apps: dict[str, Flask], staff_token: Callable[[str], str], service: str, path: str
) -> None:
    client = apps[service].test_client()
    headers = {"Authorization": f"Bearer {staff_token('admin')}"}
    for page in (75506016738034673778688, 2**62):
        huge = client.get(f"{path}?page={page}&per_page=500", headers=headers)
        assert huge.status_code == 200 and huge.get_json()["items"] == []


def test_oversized_body_is_413(make_settings: Callable[..., Settings]) -> None:
    from services.contacts.app import create_app

    app = create_app(make_settings("contacts", max_content_length=1024))
    response = app.test_client().post(
        "/api/v1/auth/token",
        data='{"email": "' + "a" * 4096 + '@example.org", "password": "x"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.mimetype == PROBLEM


def test_unexpected_error_is_500_problem_without_trace(
    make_settings: Callable[..., Settings],
) -> None:
    from services.contacts.app import create_app

    app = create_app(make_settings("contacts"))

    def explode() -> str:
        raise RuntimeError("secret internals: /srv/app/db.py line 12")

    app.add_url_rule("/explode", view_func=explode)
    response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    text = response.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text


def test_request_id_is_echoed_or_made(contacts_client) -> None:
    given = contacts_client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert given.headers["X-Request-ID"] == "abc123"
    made = contacts_client.get("/healthz")
    assert len(made.headers["X-Request-ID"]) == 32


def test_database_outage_is_503_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    from services.contacts.app import create_app

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(make_settings("contacts", database_url=down))
    response = app.test_client().post(
        "/api/v1/auth/token", json={"email": "a@example.org", "password": "irrelevant"}
    )
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    assert response.headers["Retry-After"]


def test_sign_in_is_rate_limited_with_a_429_problem(make_settings: Callable[..., Settings]) -> None:
    from services.contacts.app import create_app

    app = create_app(make_settings("contacts", ratelimit_enabled=True))
    client = app.test_client()
    # A client address of its own, so that other tests' sign-ins do not count.
    environ = {"REMOTE_ADDR": f"10.9.{free_port() % 250}.{free_port() % 250}"}
    statuses = [
        client.post(
            "/api/v1/auth/token",
            json={"email": "nobody@example.org", "password": "wrong"},
            environ_base=environ,
        ).status_code
        for _ in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429
    limited = client.post(
        "/api/v1/auth/token", json={"email": "x@example.org", "password": "y"}, environ_base=environ
    )
    assert limited.mimetype == PROBLEM
    assert limited.headers["Retry-After"]
