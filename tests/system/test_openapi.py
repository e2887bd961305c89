"""Each service's OpenAPI document is valid OpenAPI 3.0, so that generated clients and
tools (Swagger UI, schemathesis, code generators) read it as it is meant."""

from __future__ import annotations

import pytest
from flask import Flask
from openapi_spec_validator import OpenAPIV30SpecValidator

from shared.problems import PROBLEM_MIMETYPE


@pytest.mark.parametrize("service", ["contacts", "visits", "newsletter"])
def test_the_openapi_document_is_valid(service: str, apps: dict[str, Flask]) -> None:
    document = apps[service].test_client().get("/api/v1/openapi.json").get_json()
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message.splitlines()[0][:160]}"
        for error in OpenAPIV30SpecValidator(document).iter_errors()
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("service", ["contacts", "visits", "newsletter"])
def test_errors_are_documented_as_they_are_sent(service: str, apps: dict[str, Flask]) -> None:
    """problem+json, as the APIs send them (a page's errors are HTML pages as well)."""
    document = apps[service].test_client().get("/api/v1/openapi.json").get_json()
    named = document["components"]["responses"]
    wrong = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own, beside its operations
                continue
            for status, response in operation.get("responses", {}).items():
                if status != "default" and int(status) < 400:
                    continue
                if "$ref" in response:
                    response = named[response["$ref"].rsplit("/", 1)[1]]
                types = set(response.get("content", {}))
                if PROBLEM_MIMETYPE not in types or types - {PROBLEM_MIMETYPE, "text/html"}:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(types)}")
    assert not wrong, "\n".join(wrong)


def test_a_body_is_documented_as_required_where_a_field_of_it_is(apps: dict[str, Flask]) -> None:
    """Left out, a body is read as {}: a change of nothing is a body the operation can do
    without, a new organisation (a name is required) is not."""
    document = apps["contacts"].test_client().get("/api/v1/openapi.json").get_json()
    paths = document["paths"]
    assert paths["/api/v1/organisations"]["post"]["requestBody"]["required"] is True
    assert paths["/api/v1/needs/{key}"]["patch"]["requestBody"]["required"] is False
    assert paths["/api/v1/organisations/{organisation_id}"]["patch"]["requestBody"]["required"] is (
        False
    )


def test_an_imports_column_mapping_is_documented_as_the_json_object_it_is(
    apps: dict[str, Flask],
) -> None:
    """An object in a multipart body is sent as JSON (OpenAPI 3.0): what the upload reads."""
    document = apps["contacts"].test_client().get("/api/v1/openapi.json").get_json()
    body = document["paths"]["/api/v1/imports"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"]
    mapping = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["mapping"]
    assert mapping["type"] == "object"
    assert mapping["additionalProperties"] == {"type": "string", "nullable": True}


def test_a_link_in_a_mail_is_documented_as_a_page_and_as_json(apps: dict[str, Flask]) -> None:
    """It answers a page, or JSON to a client that asks for it (Accept)."""
    paths = apps["visits"].test_client().get("/api/v1/openapi.json").get_json()["paths"]
    for action in ("confirm", "cancel"):
        for method in ("get", "post"):
            answer = paths[f"/api/v1/public/registrations/{{token}}/{action}"][method]
            content = answer["responses"]["200"]["content"]
            assert set(content) == {"text/html", "application/json"}, (action, method)
            assert content["application/json"]["schema"] == {
                "$ref": "#/components/schemas/LinkResult"
            }
