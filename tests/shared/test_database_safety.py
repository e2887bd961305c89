"""What reaches the database: a path value no text column can hold is a 404 before any
query."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from flask import Flask

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("contacts", "patch", "/api/v1/needs/nachfolge%00"),
        ("visits", "get", "/api/v1/public/registrations/abc%00def/confirm"),
        ("newsletter", "post", f"/api/v1/public/unsubscribe/{uuid.uuid4()}/t%00"),
    ],
)
def test_a_path_value_with_nul_is_a_404_problem(
    apps: dict[str, Flask],
    staff_token: Callable[[str], str],
    service: str,
    method: str,
    path: str,
) -> None:
    headers = {"Authorization": f"Bearer {staff_token('admin')}"}
    client = apps[service].test_client()
    response = getattr(client, method)(path, json={"active": False}, headers=headers)
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
