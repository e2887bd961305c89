"""SQLAlchemy 2 engine and sessions, one of each per app; safe after a worker forks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import DateTime, Engine, Executable, MetaData, Row, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

# Stable constraint names, so that Alembic migrations can name what they alter or drop.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EXTENSION_KEY = "quartier.db"

T = TypeVar("T")


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


# A timezone-aware timestamp column type; times are stored in UTC.
Timestamp = DateTime(timezone=True)


def new_engine(url: str, **options: Any) -> Engine:
    """An engine whose errors and logs leave out the statements' parameters: they are the
    records' names, emails and phone numbers, and an unexpected error is logged."""
    return create_engine(url, hide_parameters=True, **options)


def sqlstate(error: DBAPIError) -> str | None:
    """PostgreSQL's error code (SQLSTATE) of a failed statement; None without one (the
    connection failed)."""
    return getattr(error.orig, "sqlstate", None)


def describe_error(error: DBAPIError) -> str:
    """A database error without the data it quotes: the server's messages name values
    (``invalid input syntax for type integer: "Erika"``, ``Key (email)=(…) already
    exists``), so only the kinds of error, the SQLSTATE, what the server names in its
    diagnostics (constraint, table, column, type) and the statement."""
    orig = error.orig
    kinds = [type(error).__name__] + ([type(orig).__name__] if orig is not None else [])
    parts = [" / ".join(kinds)]
    state = sqlstate(error)
    if state:
        parts.append(f"SQLSTATE {state}")
    diag = getattr(orig, "diag", None)
    for name in ("constraint_name", "table_name", "column_name", "datatype_name"):
        value = getattr(diag, name, None)
        if value:
            parts.append(f"{name.removesuffix('_name')} {value}")
    return f"{', '.join(parts)}; statement: {error.statement}"


class Database:
    """An engine and a session factory for one service's database."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self._engine_options = engine_options
        self.engine: Engine = self._new_engine()
        self.sessionmaker: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self._readers: dict[tuple[tuple[str, str], ...], Engine] = {}

    def _new_engine(self, **options: Any) -> Engine:
        options = {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 10,
            "pool_timeout": 10,
            **self._engine_options,
            **options,
        }
        connect_args = {"connect_timeout": 5, **options.pop("connect_args", {})}
        return new_engine(self.url, connect_args=connect_args, **options)

    def session(self) -> Session:
        return self.sessionmaker()

    def reader(self, **server_settings: str) -> Engine:
        """An engine for reads of one statement, in autocommit: no BEGIN and ROLLBACK
        around each, and these server settings (``enable_seqscan="off"``) on its own
        connections, without a round trip per use. One pool per set of settings; its
        connections are not pinged before use (see :meth:`read`)."""
        key = tuple(sorted(server_settings.items()))
        engine = self._readers.get(key)
        if engine is None:
            engine = self._readers.setdefault(
                key,
                self._new_engine(
                    isolation_level="AUTOCOMMIT",
                    pool_pre_ping=False,
                    connect_args=startup_options(**server_settings),
                ),
            )
        return engine

    def read(
        self, statement: Executable, parameters: Mapping[str, Any], **server_settings: str
    ) -> list[Row[Any]]:
        """The rows of one read-only statement, on a :meth:`reader`. Instead of a ping
        before each use (a round trip of its own), a connection found dead (the server
        restarted) is dropped with the rest of the pool and the statement runs once more on
        a new one, which a read allows."""
        engine = self.reader(**server_settings)
        try:
            with engine.connect() as conn:
                return list(conn.execute(statement, parameters))
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with engine.connect() as conn:
            return list(conn.execute(statement, parameters))

    def _engines(self) -> list[Engine]:
        return [self.engine, *self._readers.values()]

    def after_fork(self) -> None:
        # The child must not reuse the parent's sockets; close=False leaves them to the parent.
        for engine in self._engines():
            engine.dispose(close=False)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        for engine in self._engines():
            engine.dispose()


def startup_options(**server_settings: str) -> dict[str, str]:
    """libpq connect arguments that set these server settings on every new connection
    (``synchronous_commit="off"``), with no round trip of their own."""
    options = " ".join(f"-c {name}={value}" for name, value in sorted(server_settings.items()))
    return {"options": options} if options else {}


def init_db(app: Flask, url: str) -> Database:
    database = Database(url)
    app.extensions[EXTENSION_KEY] = database

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()

    return database


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION_KEY]


def db_session() -> Session:
    """The session of the current app context (a request or a task); closed at its end."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = get_database().session()
        g.db_session = session
    return session


MAX_OFFSET = 2**62  # beyond any table: a bigger page number must not overflow the database


def page_offset(page: int, per_page: int) -> int:
    """The row offset of a page (1-based); a page beyond every table is simply empty."""
    return min((page - 1) * per_page, MAX_OFFSET)


def get_or_not_found(session: Session, model: type[T], key: Any, detail: str) -> T:
    """The row with this primary key, or :class:`shared.errors.NotFound` (a 404)."""
    from shared.errors import NotFound

    row = session.get(model, key)
    if row is None:
        raise NotFound(detail)
    return row
