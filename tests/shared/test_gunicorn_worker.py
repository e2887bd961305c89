"""What gunicorn answers by itself, before the application sees a request (a request
line or headers over its limits, a request it cannot parse), is problem+json like every
other error of the APIs, from a real ``quartier api``."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn import util

from shared.gunicorn_worker import _as_problem, _Page
from shared.testing import wait_until

PROBLEM = "application/problem+json"


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send a raw request and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):  # b"": closed (a timeout fails the test)
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    assert int(headers["content-length"]) == len(body)
    is_json = headers.get("content-type", "").startswith(("application/json", PROBLEM))
    return int(status_line.split()[1]), headers, json.loads(body) if is_json else body


def test_gunicorns_own_errors_are_problem_json(api_process: Callable[[str], int]) -> None:
    port = api_process("contacts")

    # A request line over gunicorn's 4094 bytes: 414.
    long_query = "q=" + "a" * 5000
    status, headers, body = _exchange(
        port,
        f"GET /api/v1/organisations?{long_query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
    )
    assert status == 414
    assert headers["content-type"] == PROBLEM
    assert headers["connection"] == "close"
    assert body["type"] == "about:blank"
    assert body["title"] == "Request-URI Too Long"
    assert body["status"] == 414
    assert body["detail"].startswith("Request Line is too large (")

    # More than 100 header fields: 431.
    fields = "".join(f"X-Feld-{number}: {number}\r\n" for number in range(101))
    status, headers, body = _exchange(
        port, f"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode()
    )
    assert (status, headers["content-type"], body["status"]) == (431, PROBLEM, 431)
    assert body["title"] == "Request Header Fields Too Large"
    assert body["detail"]

    # A request line that is none: 400.
    status, headers, body = _exchange(port, b"UNSINN\r\n\r\n")
    assert (status, headers["content-type"], headers["connection"]) == (400, PROBLEM, "close")
    assert (body["title"], body["status"]) == ("Bad Request", 400)
    assert "Invalid" in body["detail"]

    # Requests the application answers are as they were.
    status, headers, body = _exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert (status, body) == (200, {"status": "ok"})
    status, headers, body = _exchange(
        port, b"GET /api/v1/nichts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert (status, headers["content-type"], body["status"]) == (404, PROBLEM, 404)


def test_apis_side_by_side_start_without_errors(
    api_process: Callable[[str], int], tmp_path: Path
) -> None:
    """The APIs of one machine (``make run`` starts three) open no control socket: gunicorn's
    (``gunicornc``) is one per home directory by default, so APIs starting at once log that
    it is in use, and one started later takes it over from the others."""
    for service in ("contacts", "visits"):
        port = api_process(service)
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        assert _exchange(port, request)[0] == 200
    for service in ("contacts", "visits"):
        log = (tmp_path / f"{service}-api.log").read_text()
        assert "Booting worker" in log, log
        assert "[ERROR]" not in log and "Control socket" not in log, log


def test_an_error_outside_the_application_says_only_that_it_was_logged() -> None:
    """gunicorn's 500 (a worker thread failed outside the application) has no message."""
    page = _Page()
    util.write_error(page, 500, "Internal Server Error", "")
    head, _, body = _as_problem(page.data).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 500 Internal Server Error"
    assert f"Content-Type: {PROBLEM}".encode() in head.split(b"\r\n")
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An unexpected error occurred. It has been logged.",
    }


def test_the_access_log_leaves_out_query_strings(
    api_process: Callable[[str], int], tmp_path: Path
) -> None:
    """A query string may hold personal data (the address of a request about a person's
    data, a search for a name, a newsletter token): the access log names the path only."""
    port = api_process("contacts")
    address = "anna.zugriff@beispiel.example"
    status, _, _ = _exchange(
        port,
        f"GET /api/v1/privacy/export?email={address} HTTP/1.1\r\nHost: localhost\r\n"
        "Referer: http://localhost/suche?q=Anna%20Zugriff\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 401
    log = tmp_path / "contacts-api.log"
    line = wait_until(
        lambda: next((x for x in log.read_text().splitlines() if "/privacy/export" in x), None)
    )
    assert '"GET /api/v1/privacy/export HTTP/1.1" 401' in line
    assert "zugriff" not in log.read_text().lower()
