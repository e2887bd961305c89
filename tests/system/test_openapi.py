"""Each service's OpenAPI document is valid OpenAPI 3.0, so that generated clients and
tools (Swagger UI, schemathesis, code generators) read it as it is meant."""

from __future__ import annotations

import pytest
from flask import Flask
from openapi_spec_validator import OpenAPIV30SpecValidator


@pytest.mark.parametrize("service", ["contacts", "visits", "newsletter"])
def test_the_openapi_document_is_valid(service: str, apps: dict[str, Flask]) -> None:
    document = apps[service].test_client().get("/api/v1/openapi.json").get_json()
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message.splitlines()[0][:160]}"
        for error in OpenAPIV30SpecValidator(document).iter_errors()
    ]
    assert not errors, "\n".join(errors)
