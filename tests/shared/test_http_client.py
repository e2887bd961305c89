"""The client for calls between services, against a service served over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from shared.http import ServiceClient, ServiceError
from shared.logs import request_id_var
from shared.net import free_port
from shared.problems import ServiceUnavailable


@pytest.fixture
def visits_url(visits_app: Flask) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, visits_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join()


def test_call_carries_a_service_token_and_the_request_id(visits_url: str, secret_key: str) -> None:
    client = ServiceClient(visits_url, secret=secret_key, caller="newsletter")
    token = request_id_var.set("rid-from-the-caller")
    try:
        response = client.request("GET", "/api/v1/me")
    finally:
        request_id_var.reset(token)
        client.close()
    assert response.json() == {"subject": "service:newsletter", "role": "service", "email": None}
    assert response.headers["X-Request-ID"] == "rid-from-the-caller"


def test_error_answers_are_raised_with_their_body(visits_url: str, secret_key: str) -> None:
    client = ServiceClient(visits_url, secret=secret_key, caller="newsletter")
    with pytest.raises(ServiceError) as error:
        client.get_json("/api/v1/no-such-thing")
    client.close()
    assert error.value.status == 404
    assert error.value.body["status"] == 404


def test_unreachable_service_is_service_unavailable(secret_key: str) -> None:
    client = ServiceClient(
        f"http://127.0.0.1:{free_port()}", secret=secret_key, caller="newsletter", retries=1
    )
    with pytest.raises(ServiceUnavailable):
        client.get_json("/api/v1/me")
    client.close()


def test_routine_periodic_task_lines_are_dropped_but_their_warnings_kept() -> None:
    import logging

    from shared.logs import QuietRoutineFilter

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("celery.app.trace", level, __file__, 1, message, None, None)

    quiet = QuietRoutineFilter()
    assert not quiet.filter(record(logging.INFO, "Task newsletter.tick[1] succeeded in 0.02s"))
    assert not quiet.filter(record(logging.INFO, "Task visits.relay_outbox[2] received"))
    assert quiet.filter(record(logging.INFO, "Task newsletter.send_campaign[3] received"))
    assert quiet.filter(record(logging.WARNING, "Task newsletter.tick[4] raised: boom"))


def test_log_lines_name_the_service_in_threads_started_later() -> None:
    """gunicorn's threads start with a context of their own: the service must hold there."""
    import logging
    import threading

    from shared.logs import ContextFilter

    context = ContextFilter("visits")
    seen: dict[str, object] = {}

    def handle_request() -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hallo", None, None)
        context.filter(record)
        seen["service"] = record.service  # type: ignore[attr-defined]

    thread = threading.Thread(target=handle_request)
    thread.start()
    thread.join()
    assert seen == {"service": "visits"}
