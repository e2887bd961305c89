"""Who may call what: every operation of the contacts OpenAPI document, for every role.

The expected roles come from the small tables below, not from the code under test: reading
is for every role, writing for coordinators and admins, and the exceptions are named. An
endpoint added without a rule of its own is held to the default and fails here if its guard
differs (an admin-only one lets no coordinator in, a public one answers without a token).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.auth import service_token
from shared.testing import auth

PREFIX = "/api/v1"
READERS = ("admin", "coordinator", "viewer", "service")
WRITERS = ("admin", "coordinator")
ADMINS = ("admin",)

PUBLIC = {("POST", "/auth/token")}
ADMIN_ONLY = {
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{user_id}"),
    ("PATCH", "/users/{user_id}"),
    ("POST", "/districts"),
    ("PATCH", "/districts/{district_id}"),
    ("POST", "/needs"),
    ("PATCH", "/needs/{key}"),
    ("GET", "/privacy/export"),
    ("POST", "/privacy/erasures"),
    ("DELETE", "/privacy/suppressions"),
}
# Reading an upload is reading personal data that only those who may import see.
WRITERS_ONLY_READS = {
    ("GET", "/imports/{import_id}"),
    ("GET", "/imports/{import_id}/errors.csv"),
}


def expected_roles(method: str, path: str) -> tuple[str, ...]:
    if (method, path) in ADMIN_ONLY:
        return ADMINS
    if (method, path) in WRITERS_ONLY_READS:
        return WRITERS
    return READERS if method == "GET" else WRITERS


def _operations(client: FlaskClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get(f"{PREFIX}/openapi.json").get_json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert path.startswith(PREFIX), path
                parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
                found.append(
                    (
                        method.upper(),
                        path.removeprefix(PREFIX),
                        {**operation, "parameters": parameters},
                    )
                )
    return found


def _url(path: str, operation: dict[str, Any]) -> str:
    """The path with a value for each parameter that names no record (a 404 for those
    allowed in, so that nothing is written)."""
    values = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        schema = parameter.get("schema", {})
        if schema.get("type") == "integer":
            values[parameter["name"]] = "2147483000"
        elif schema.get("format") == "uuid":
            values[parameter["name"]] = str(uuid.uuid4())
        else:
            values[parameter["name"]] = f"nichts-{uuid.uuid4().hex[:8]}"
    return PREFIX + re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)


@pytest.fixture
def principals(
    staff_token: Callable[[str], str], secret_key: str
) -> dict[str, dict[str, str] | None]:
    return {
        "admin": auth(staff_token("admin")),
        "coordinator": auth(staff_token("coordinator")),
        "viewer": auth(staff_token("viewer")),
        "service": auth(service_token(secret_key, "visits")),
        "nobody": None,
    }


def test_the_tables_name_only_operations_that_exist(contacts_client: FlaskClient) -> None:
    operations = {(method, path) for method, path, _ in _operations(contacts_client)}
    assert (PUBLIC | ADMIN_ONLY | WRITERS_ONLY_READS) - operations == set()
    assert len(operations) >= 40  # the document was read whole


def test_every_operation_lets_in_exactly_its_roles(
    contacts_client: FlaskClient, principals: dict[str, dict[str, str] | None]
) -> None:
    # Cheap filters for the reads allowed in (an export of the whole register otherwise).
    query = {"tags": f"keiner-{uuid.uuid4().hex[:8]}", "organisation_id": str(uuid.uuid4())}
    wrong: list[str] = []
    for method, path, operation in _operations(contacts_client):
        public = (method, path) in PUBLIC
        allowed = expected_roles(method, path)
        if not public:
            documented = operation.get("description", "").rsplit("Roles: ", 1)[-1].rstrip(".")
            if set(documented.split(", ")) != set(allowed):
                wrong.append(f"{method} {path}: documented for {documented}, expected {allowed}")
        for who, headers in principals.items():
            response = contacts_client.open(
                _url(path, operation),
                method=method,
                headers=headers or {},
                json={} if method != "GET" else None,
                query_string=query if method == "GET" else None,
            )
            status = response.status_code
            if public or (headers is not None and who in allowed):
                expected, met = "let in", status not in (401, 403) and status < 500
            elif headers is None:
                expected, met = "401", status == 401
            else:
                expected, met = "403", status == 403
            if not met:
                wrong.append(f"{method} {path} as {who}: {status}, expected {expected}")
    assert not wrong, "\n".join(wrong)
