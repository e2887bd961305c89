"""Concurrent requests on the real database, the overlap forced rather than hoped for: a
transaction of the test's own holds a lock (a ``SELECT … FOR UPDATE``, an uncommitted
insert or update), the requests start in threads, PostgreSQL's ``pg_stat_activity`` shows
when they wait for it, and then the test lets go."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, text
from werkzeug.test import TestResponse

from shared.db import get_database

Call = Callable[[FlaskClient], TestResponse]


@contextmanager
def holding(app: Flask, statement: str, **params: Any) -> Iterator[Connection]:
    """Run ``statement`` (a ``SELECT … FOR UPDATE``, an insert) in a transaction that stays
    open inside the block and is rolled back at its end: what it locks stays locked."""
    with get_database(app).engine.connect() as conn:
        conn.execute(text(statement), params)
        try:
            yield conn
        finally:
            conn.rollback()


def waiting_for_locks(app: Flask) -> int:
    """Backends of this database waiting for a lock right now (a fresh statistics snapshot
    each call: a new connection's transaction)."""
    with get_database(app).engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


def overlapping(
    app: Flask,
    calls: list[Call],
    statement: str,
    timeout: float = 15.0,
    *,
    commit: bool = False,
    **params: Any,
) -> list[TestResponse]:
    """Start the calls one after the other while ``statement`` holds its lock, each once
    the one before waits for it (so they queue in this order), then let go: roll back, or
    with ``commit`` commit what the statement wrote (a change that lands while the calls
    wait). The answers, in the order of ``calls``."""
    with ThreadPoolExecutor(len(calls)) as pool:
        with holding(app, statement, **params) as conn:
            futures: list[Future[TestResponse]] = []
            for call in calls:
                futures.append(pool.submit(call, app.test_client()))
                _wait_for_waiters(app, futures, timeout)
            if commit:
                conn.commit()
        return [future.result(timeout=timeout) for future in futures]


def _wait_for_waiters(app: Flask, futures: list[Future[TestResponse]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while waiting_for_locks(app) < len(futures):
        done = [f for f in futures if f.done()]
        if done:  # a call that did not wait for the lock: show what it answered
            response = done[0].result()
            pytest.fail(f"a call did not wait: {response.status_code} {response.data!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"the calls did not all wait for the lock within {timeout} s")
        time.sleep(0.02)


def unhindered(
    app: Flask, call: Call, statement: str, timeout: float = 15.0, **params: Any
) -> TestResponse:
    """The answer of ``call``, made while ``statement`` holds its lock; the test fails as
    soon as the call waits for a lock instead (nothing here depends on how long it takes)."""
    with ThreadPoolExecutor(1) as pool, holding(app, statement, **params):
        future = pool.submit(call, app.test_client())
        deadline = time.monotonic() + timeout
        while not future.done():
            if waiting_for_locks(app):
                pytest.fail("the call waited for the lock")
            if time.monotonic() > deadline:
                pytest.fail(f"the call did not answer within {timeout} s")
            time.sleep(0.02)
        return future.result()


def statuses(responses: list[TestResponse]) -> list[int]:
    for response in responses:
        assert response.status_code < 500, response.get_json()
    return sorted(response.status_code for response in responses)
