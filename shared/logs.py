"""Structured JSON logs, each line carrying the service and the request id."""

from __future__ import annotations

import logging
import sys
import traceback
import uuid
from contextvars import ContextVar

from flask import Flask, Response, g, request
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.exc import DBAPIError

from shared.db import describe_error

REQUEST_ID_HEADER = "X-Request-ID"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class ContextFilter(logging.Filter):
    """The process's service (one per process: it holds in every thread, gunicorn's too)
    and the request id of the current request."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        return True


# Tasks that beat runs every few seconds: their "received" and "succeeded" lines are noise.
ROUTINE_TASKS = ("relay_outbox", "newsletter.tick")


class QuietRoutineFilter(logging.Filter):
    """Drops the INFO lines of the routine periodic tasks (warnings and errors stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(name in message for name in ROUTINE_TASKS)


class TaskArgumentsFilter(logging.Filter):
    """Celery gives its task lines (received, succeeded, failed, retried) the task's
    arguments as the extra ``data``, which a JSON line writes out: an event's envelope
    holds a person's name, email and phone, a sign-up's IP. The line keeps the task's name
    and id, not its arguments (which would outlive an erasure of the person's data)."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and ("args" in data or "kwargs" in data):
            record.data = {k: v for k, v in data.items() if k not in ("args", "kwargs")}
        return True


class DatabaseErrorFilter(logging.Filter):
    """A database error's text quotes the data (``Key (email)=(…) already exists``): a
    record carrying one, as its exception or in its message (a Celery task that failed),
    shows it as :func:`shared.db.describe_error` does, with its stack frames."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, DBAPIError):
            return True
        described = describe_error(error)
        message = record.getMessage()
        for text in (repr(error), str(error)):
            message = message.replace(text, described)
        if described not in message:
            message = f"{message}: {described}"
        frames = "".join(traceback.format_tb(error.__traceback__))
        record.msg, record.args = f"{message}\n{frames}", None
        record.exc_info = record.exc_text = None
        return True


def configure_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(service)s %(request_id)s] %(message)s")
        )
    handler.addFilter(ContextFilter(service))
    handler.addFilter(QuietRoutineFilter())
    handler.addFilter(TaskArgumentsFilter())
    handler.addFilter(DatabaseErrorFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_quartier", False)]:
        root.removeHandler(old)
    handler._quartier = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def new_request_id() -> str:
    return uuid.uuid4().hex


def init_request_ids(app: Flask) -> None:
    """Take the caller's X-Request-ID (or make one) and hand it on in the response."""

    @app.before_request
    def _bind() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else new_request_id()
        g.request_id = rid
        g.request_id_token = request_id_var.set(rid)

    @app.after_request
    def _echo(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
