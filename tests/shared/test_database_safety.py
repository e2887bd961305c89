"""What reaches the database and what its errors leave in the log: a path value no text
column can hold is a 404 before any query, and an unexpected database error is logged
without the data of the statement (names, emails: personal data)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import Database, db_session
from shared.settings import Settings
from shared.testing import Engines

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


def _formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(message)s")
    return "\n".join(formatter.format(record) for record in records)


def test_a_database_error_is_logged_without_the_data(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL quotes values in its messages and details, and SQLAlchemy adds the
    parameters: neither is in the log, what the error was is."""
    from services.contacts.app import create_app

    app = create_app(make_settings("contacts"))
    email = f"erika-{uuid.uuid4().hex[:8]}@example.org"
    name = f"Erika Mustermann-{uuid.uuid4().hex[:8]}"

    def insert_twice() -> str:  # a conflict (409), logged as a warning
        statement = text(
            "INSERT INTO users (id, email, name, password_hash, role, is_active, created_at)"
            " VALUES (:id, :email, 'x', 'x', 'viewer', true, now())"
        )
        db_session().execute(statement, {"id": uuid.uuid4(), "email": email})
        db_session().execute(statement, {"id": uuid.uuid4(), "email": email})
        return "unreachable"

    def break_a_check() -> str:  # a check constraint (the schemas missed it): a 500
        db_session().execute(
            text(
                "INSERT INTO users (id, email, name, password_hash, role, is_active, created_at)"
                " VALUES (:id, :email, 'x', 'x', 'wizard', true, now())"
            ),
            {"id": uuid.uuid4(), "email": f"x{email}"},
        )
        return "unreachable"

    def exceed_a_limit() -> str:  # a limit a statement exceeded (a bug), not an outage
        db_session().execute(text("SELECT CAST(repeat('x', 3000) AS tsvector)"))
        return "unreachable"

    def deadlock() -> str:  # what PostgreSQL answers the victim of a deadlock
        db_session().execute(
            text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'deadlock_detected'; END $$")
        )
        return "unreachable"

    def cast_a_name() -> str:
        db_session().execute(text("SELECT CAST(:name AS integer)"), {"name": name})
        return "unreachable"

    app.add_url_rule("/insert-twice", view_func=insert_twice)
    app.add_url_rule("/break-a-check", view_func=break_a_check)
    app.add_url_rule("/exceed-a-limit", view_func=exceed_a_limit)
    app.add_url_rule("/deadlock", view_func=deadlock)
    app.add_url_rule("/cast-a-name", view_func=cast_a_name)
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        for path, status in (
            ("/insert-twice", 409),
            ("/break-a-check", 500),
            ("/exceed-a-limit", 500),
            ("/deadlock", 409),
            ("/cast-a-name", 500),
        ):
            response = client.get(path)
            assert response.status_code == status
            assert response.mimetype == PROBLEM
    logged = _formatted(caplog.records)
    assert email not in logged and name not in logged
    assert "SQLSTATE 23505" in logged and "constraint uq_users_email" in logged
    assert "SQLSTATE 23514" in logged and "constraint ck_users_role" in logged
    assert "SQLSTATE 54000" in logged
    assert "SQLSTATE 22P02" in logged and "SELECT CAST(%(name)s AS integer)" in logged
    assert "break_a_check" in logged and "cast_a_name" in logged  # where it happened


def test_engines_leave_parameters_out_of_errors(engines: Engines) -> None:
    database = Database(engines.databases["contacts"])
    statement = text("SELECT CAST(:name AS integer) + 1")
    try:
        for connectable in (database.engine, database.reader(work_mem="8MB")):
            with pytest.raises(DBAPIError) as raised, connectable.connect() as conn:
                conn.execute(statement, {"name": "Jördis Weiß"})
            assert "Weiß" not in str(raised.value).split("[SQL:")[1]
            assert "parameters hidden" in str(raised.value)
    finally:
        database.dispose()


def test_a_logged_database_error_shows_no_data(engines: Engines) -> None:
    """What a Celery worker logs of a task that failed, or any exception logged: the
    error's text quotes the value; the log line does not."""
    from shared.logs import DatabaseErrorFilter

    name = "Jördis " + "Weiß"  # (a line of the stack shows the source, not the value)
    database = Database(engines.databases["contacts"])
    try:
        with pytest.raises(DBAPIError) as raised, database.engine.connect() as conn:
            conn.execute(text("SELECT CAST(:name AS integer)"), {"name": name})
    finally:
        database.dispose()
    error = raised.value
    assert "Weiß" in str(error)  # what would be logged
    record = logging.LogRecord(
        "celery.app.trace",
        logging.ERROR,
        __file__,
        1,
        "Task %s raised unexpected: %r",
        ("contacts.run_import", error),
        (type(error), error, error.__traceback__),
    )
    assert DatabaseErrorFilter().filter(record)
    line = logging.Formatter().format(record)
    assert "Weiß" not in line
    assert "Task contacts.run_import raised unexpected: DataError" in line
    assert "SQLSTATE 22P02" in line
