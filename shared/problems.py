"""Errors as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, has_request_context, json, request
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from shared.db import describe_error, sqlstate
from shared.errors import DomainError

PROBLEM_MIMETYPE = "application/problem+json"
# The detail of a 500: what went wrong is in the log, not in the answer.
UNEXPECTED = "An unexpected error occurred. It has been logged."

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """A dependency (database, broker, another service) cannot be reached right now."""

    def __init__(self, detail: str = "A dependency is unavailable.", retry_after: int = 5) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def problem_body(
    status: int, detail: str | None = None, *, title: str | None = None, type_: str = "about:blank"
) -> dict[str, Any]:
    """The members every problem has (the web server's own, see gunicorn_worker.py, too)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    return body


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    body = problem_body(status, detail, title=title, type_=type_)
    if has_request_context():
        body["instance"] = request.path
    body.update({k: v for k, v in extensions.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def flatten_messages(messages: Any) -> Any:
    """webargs groups messages by location ({"json": {"email": [...]}}); clients want fields."""
    if (
        isinstance(messages, dict)
        and messages
        and all(
            key in ("json", "query", "form", "files", "headers", "cookies", "path", "view_args")
            for key in messages
        )
    ):
        merged: dict[str, Any] = {}
        for per_location in messages.values():
            if isinstance(per_location, dict):
                merged.update(per_location)
            else:
                merged.setdefault("_schema", []).extend(per_location)
        return merged
    return messages


def http_exception_problem(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="quartier"')
    errors = data.get("messages") or data.get("errors")
    detail = data.get("message") or data.get("detail")
    if detail is None and error.description and status != 422:
        detail = error.description
    if status == 422 and detail is None:
        detail = "The request contains invalid fields."
    return problem(
        status,
        detail,
        headers=headers,
        errors=flatten_messages(errors) if errors else None,
        **{k: v for k, v in data.items() if k in ("code", "retry_after")},
    )


def register_problem_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        return http_exception_problem(error)

    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem(error.status, error.detail, **error.extensions)

    @app.errorhandler(ServiceUnavailable)
    def _unavailable(error: ServiceUnavailable) -> Response:
        return problem(503, error.detail, headers={"Retry-After": str(error.retry_after)})

    @app.errorhandler(StaleDataError)
    def _stale(error: StaleDataError) -> Response:
        # A row changed by another transaction since it was read (the version counter of
        # the mapper did not match): the same answer as a version check in the use case.
        log.warning("stale write refused: %s", error)  # names the table, holds no values
        return problem(409, "The record was changed meanwhile; reload it and try again.")

    @app.errorhandler(IntegrityError)
    def _integrity(error: IntegrityError) -> Response:
        return integrity_problem(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if is_dependency_down(error):
            log.warning("dependency unavailable: %s", error.__class__.__name__)
            return problem(
                503, "A dependency is unavailable; try again shortly.", headers={"Retry-After": "5"}
            )
        if isinstance(error, DBAPIError) and (sqlstate(error) or "").startswith("40"):
            # A deadlock or a serialisation failure: the transaction was rolled back whole.
            log.warning("transaction rolled back: %s", describe_error(error))
            return problem(409, "The records changed meanwhile; try again.")
        if isinstance(error, DBAPIError):  # its message quotes the data (see describe_error)
            return _unexpected_database_error(error)
        log.exception("unhandled error")
        return problem(500, UNEXPECTED)


# SQLSTATEs of a write that lost a race (or a check missed): a conflict with the stored
# state, answered 409 like the use cases' own checks.
CONFLICT_SQLSTATES = {
    "23505": "A record with these values exists already.",  # unique_violation
    "23503": "The record refers to, or is referred to by, another that changed meanwhile.",
}


def integrity_problem(error: IntegrityError) -> Response:
    """A constraint the database enforced: unique and foreign-key violations are conflicts
    (409); any other (a check constraint: a bug, since the schemas validate first) is a 500.
    Logged without the data (see describe_error): the statement's values are personal."""
    detail = CONFLICT_SQLSTATES.get(sqlstate(error) or "")
    if detail is None:
        return _unexpected_database_error(error)
    log.warning("integrity conflict: %s", describe_error(error))
    return problem(409, detail)


def _unexpected_database_error(error: DBAPIError) -> Response:
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unhandled database error: %s\n%s", describe_error(error), frames)
    return problem(500, UNEXPECTED)


def is_dependency_down(error: Exception) -> bool:
    """A database or Redis that cannot serve now (see DEPENDENCY_DOWN_CLASSES)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    from sqlalchemy.exc import OperationalError

    if isinstance(error, OperationalError):
        # No SQLSTATE: the connection failed. Otherwise the server's classes for a server
        # that cannot serve now; not, say, a limit a statement exceeded (54), a bug.
        state = sqlstate(error)
        return state is None or state[:2] in DEPENDENCY_DOWN_CLASSES
    return isinstance(error, RedisConnectionError | ConnectionError | TimeoutError)


# SQLSTATE classes: connection exception, insufficient resources (disk, memory,
# connections), operator intervention (shutdown, cancelled), system error (I/O).
DEPENDENCY_DOWN_CLASSES = ("08", "53", "57", "58")
