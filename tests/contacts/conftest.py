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


def _maker(path: str, defaults: Callable[[], dict[str, Any]], name: str) -> Any:
    """A fixture ``name``: a maker of records at ``path``, the defaults (fresh each call)
    overridden by what the test gives; it fails the test at once if none is created."""

    @pytest.fixture(name=name)
    def fixture(contacts_client: FlaskClient, coordinator: dict[str, str]) -> Maker:
        def make(**fields: Any) -> dict[str, Any]:
            body = {**defaults(), **fields}
            response = contacts_client.post(path, json=body, headers=coordinator)
            assert response.status_code == 201, response.get_json()
            return dict(response.get_json())

        return make

    return fixture


make_org = _maker(
    "/api/v1/organisations",
    lambda: {"kind": "business", "name": f"Betrieb {suffix()}"},
    name="make_org",
)
make_person = _maker(
    "/api/v1/people", lambda: {"last_name": f"Person{suffix()}"}, name="make_person"
)
# Premises need their owner: ``make_premises(owner_id=landlord["id"], …)``.
make_premises = _maker(
    "/api/v1/premises",
    lambda: {"street": "Warnowallee", "floor_area": "80", "use": "retail"},
    name="make_premises",
)


def new_district(client: FlaskClient, admin: dict[str, str], name: str) -> dict[str, Any]:
    created = client.post("/api/v1/districts", json={"name": name}, headers=admin)
    assert created.status_code == 201, created.get_json()
    return dict(created.get_json())


def new_need(client: FlaskClient, admin: dict[str, str], label: str) -> dict[str, Any]:
    created = client.post("/api/v1/needs", json={"label": label}, headers=admin)
    assert created.status_code == 201, created.get_json()
    return dict(created.get_json())


def role(organisation: dict[str, Any], name: str) -> dict[str, str]:
    """A role to give in a person's ``roles``."""
    return {"organisation_id": organisation["id"], "role": name}


def roles_of(person: dict[str, Any]) -> list[tuple[str, str]]:
    """A person's roles as (organisation id, role), sorted."""
    return sorted((r["organisation_id"], r["role"]) for r in person["roles"])
