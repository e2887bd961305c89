"""Helpers for the contacts tests: tokens per role and records with random names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.testing import auth

Maker = Callable[..., dict[str, Any]]


def suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def coordinator(staff_token: Callable[[str], str]) -> dict[str, str]:
    return auth(staff_token("coordinator"))


@pytest.fixture
def viewer(staff_token: Callable[[str], str]) -> dict[str, str]:
    return auth(staff_token("viewer"))


@pytest.fixture
def admin(staff_token: Callable[[str], str]) -> dict[str, str]:
    return auth(staff_token("admin"))


@pytest.fixture
def make_org(contacts_client: FlaskClient, coordinator: dict[str, str]) -> Maker:
    def make(**fields: Any) -> dict[str, Any]:
        body = {"kind": "business", "name": f"Betrieb {suffix()}", **fields}
        response = contacts_client.post("/api/v1/organisations", json=body, headers=coordinator)
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    return make
