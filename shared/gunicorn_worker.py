"""gunicorn's own error answers as problem details (RFC 9457), like the APIs' others.

gunicorn answers some requests itself, before any application sees them: a request line
longer than ``--limit-request-line`` (414), too many or too large header fields (431, or
400), a request line or header it cannot parse (400), and a 500 when a worker thread
fails outside the application. It writes those as an HTML page; every other error of the
APIs is ``application/problem+json`` (see problems.py), and that is what clients parse.

``quartier api`` runs gunicorn with this worker class: gunicorn's threaded worker (what
``--threads`` selects), whose error handler lets gunicorn decide as it does (the status,
its reason, its message, its log lines and access-log entry), keeps the page gunicorn
writes instead of sending it, and sends the same answer as problem details: same status
line and headers (``Connection: close``: gunicorn closes the connection after it), the
body ``{"type", "title", "status", "detail"}``.
"""

from __future__ import annotations

import html
import json
import re
import socket
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from shared.problems import PROBLEM_MIMETYPE, UNEXPECTED, problem_body

# For ``--worker-class``.
WORKER_CLASS = f"{__name__}.ProblemThreadWorker"

# gunicorn's page: its message after the heading (HTML-escaped), or nothing for a 500.
_MESSAGE = re.compile(r"</h1>(.*?)</body>", re.DOTALL)
_REPLACED_HEADERS = (b"content-type:", b"content-length:")


class ProblemThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, its error answers as problem details."""

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        page = _Page()
        super().handle_error(req, page, addr, exc)  # gunicorn's status, message, log lines
        if not page.data:  # gunicorn wrote nothing: neither do we
            return
        try:
            answer = _as_problem(page.data)
        except (ValueError, IndexError):  # not the message gunicorn writes now: send it as is
            answer = page.data
        try:
            util.write_nonblock(client, answer)
        except Exception:  # the client is gone (what gunicorn's own handler does)
            self.log.debug("Failed to send error message.")


class _Page:
    """Stands for the client's socket while gunicorn writes its error page: what is
    written is kept, not sent."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # a non-blocking socket: gunicorn writes at once, no mode to switch

    def sendall(self, data: bytes) -> None:
        self.data += data


def _as_problem(page: bytes) -> bytes:
    """gunicorn's HTTP message with the HTML page replaced by problem details."""
    head, _, body = page.partition(b"\r\n\r\n")
    status_line, *headers = head.split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    found = _MESSAGE.search(body.decode("latin-1"))
    detail = html.unescape(found[1]).strip() if found else ""
    content = json.dumps(
        problem_body(status, detail or (UNEXPECTED if status >= 500 else None))
    ).encode()
    kept = [line for line in headers if not line.lower().startswith(_REPLACED_HEADERS)]
    return b"\r\n".join(
        [
            status_line,
            *kept,
            f"Content-Type: {PROBLEM_MIMETYPE}".encode(),
            f"Content-Length: {len(content)}".encode(),
            b"",
            content,
        ]
    )
