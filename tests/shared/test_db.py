"""The database helpers: the reader engines beside the session engine."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import Database
from shared.testing import Engines


def test_a_reader_has_its_settings_and_autocommit_and_leaves_the_rest_alone(
    engines: Engines,
) -> None:
    database = Database(engines.databases["contacts"])
    try:
        reader = database.reader(enable_seqscan="off", work_mem="8MB")
        assert database.reader(work_mem="8MB", enable_seqscan="off") is reader
        with reader.connect() as conn:
            assert conn.scalar(text("SHOW enable_seqscan")) == "off"
            assert conn.scalar(text("SHOW work_mem")) == "8MB"
            # autocommit: no transaction is open around a statement
            assert conn.scalar(text("SELECT now() = statement_timestamp()")) is True
        with database.engine.connect() as conn:
            assert conn.scalar(text("SHOW enable_seqscan")) == "on"
        with database.reader().connect() as conn:
            assert conn.scalar(text("SHOW enable_seqscan")) == "on"
    finally:
        database.dispose()


def test_a_read_outlives_a_restarted_server(engines: Engines) -> None:
    """The reader does not ping its connections: a read that meets a dead one (here, all of
    them killed as a server restart would) runs again on a new connection."""
    database = Database(engines.databases["contacts"])
    try:
        statement = text("SELECT pg_backend_pid() AS pid")
        first = database.read(statement, {}, application_name="reader-test")[0].pid
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        again = database.read(statement, {}, application_name="reader-test")[0].pid
        assert again != first
    finally:
        database.dispose()
