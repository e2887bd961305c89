"""Property-based requests against every operation of each service's OpenAPI document
(schemathesis, in process): whatever a client sends, the answer is never a 5xx, and it is
what the document says it is (its content type, and the schema of its status).

Each service gets databases of its own for this, so that the generated records (thousands
of odd names, trainings, lists) stay out of the other tests' way. Staff operations are
called with an admin token, public ones as they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, response_schema_conformance
from schemathesis.core.failures import FailureGroup

from shared.migrations import upgrade
from shared.settings import Settings
from shared.testing import Engines, own_database

from ..visits.helpers import close_app

pytestmark = pytest.mark.slow

# Besides no 5xx: every answer is of a content type and, where JSON, of a schema the
# document gives for its status.
DOCUMENTED = [content_type_conformance, response_schema_conformance]

EXAMPLES = 25  # per operation; the CLI (schemathesis run) goes further by hand

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases on every run: a failure here is reproducible
)


@schemathesis.serializer("message/rfc822")
def _mail_bytes(_context: Any, value: Any) -> bytes:
    """Returned mails (bounces, unsubscribe requests) are posted as raw bytes."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def _fuzz_app(
    service: str, engines: Engines, make_settings: Callable[..., Settings]
) -> Iterator[Flask]:
    with own_database(engines, service, "fuzz") as url:
        upgrade(service, url)
        module = importlib.import_module(f"services.{service}.app")
        app = module.create_app(make_settings(service, database_url=url))
        try:
            yield app
        finally:
            close_app(app)


@pytest.mark.parametrize("service", ["contacts", "visits", "newsletter"])
def test_every_operation_answers_generated_requests_as_documented_never_with_a_5xx(
    service: str,
    engines: Engines,
    make_settings: Callable[..., Settings],
    staff_token: Callable[[str], str],
) -> None:
    admin = {"Authorization": f"Bearer {staff_token('admin')}"}
    failures: list[str] = []
    for app in _fuzz_app(service, engines, make_settings):
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
        # Every operation must load: one that does not (a reference to a response the
        # document lacks, say) is a broken document, whatever its answers would be.
        results = list(schema.get_all_operations())
        assert not [r.err() for r in results if hasattr(r, "err")]
        operations = [r.ok() for r in results]
        for operation in operations:

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy())
            def call(case: Any) -> None:
                response = case.call(headers=admin)
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} {case.as_curl_command()}")
                try:
                    case.validate_response(response, checks=DOCUMENTED)
                except FailureGroup as group:
                    failures.extend(
                        f"{case.operation.label} {response.status_code}: {failure.title}: "
                        + " ".join(failure.message.split())[:200]
                        for failure in group.exceptions
                    )

            call()
    assert not failures, "\n".join(sorted(set(failures))[:60])
