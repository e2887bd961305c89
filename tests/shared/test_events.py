"""The transactional outbox, the relay and the idempotent consumer, against a real Redis
broker (one of this test's own, so that it can be stopped) and real Celery workers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.contacts.models import OutboxEvent
from services.visits.models import InboxEvent
from shared.celery_app import get_celery
from shared.db import get_database
from shared.embedded import EmbeddedRedis
from shared.events import Envelope, get_bus, record_event
from shared.settings import Settings
from shared.testing import start_embedded_redis, wait_until

EVENT_TYPE = "contacts.test.pinged"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = start_embedded_redis(tmp_path / "broker")
    yield redis
    redis.stop()


@pytest.fixture
def applied() -> list[Envelope]:
    return []


@pytest.fixture
def pair(
    make_settings: Callable[..., Settings], broker: EmbeddedRedis, applied: list[Envelope]
) -> Iterator[tuple[Flask, Flask]]:
    """A producer (contacts) and a consumer (visits) on the private broker. The consumer
    handles the test event by remembering it, in the same transaction as its inbox row."""
    from services.contacts.app import create_app as create_contacts
    from services.visits.app import create_app as create_visits

    producer = create_contacts(make_settings("contacts", redis_url=broker.url()))
    consumer = create_visits(make_settings("visits", redis_url=broker.url()))
    lock = threading.Lock()

    def handle(session: Session, envelope: Envelope) -> None:
        with lock:
            applied.append(envelope)

    get_bus(producer).routes = lambda event_type: ("visits",) if event_type == EVENT_TYPE else ()
    get_bus(consumer).handlers = {EVENT_TYPE: handle}
    yield producer, consumer
    for app in (producer, consumer):
        get_database(app).dispose()


@pytest.fixture
def consumer_worker(pair: tuple[Flask, Flask]) -> Iterator[None]:
    from celery.contrib.testing.worker import start_worker

    _producer, consumer = pair
    with start_worker(
        get_celery(consumer),
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=["visits"],
        loglevel="WARNING",
    ):
        yield


def _emit(app: Flask, marker: str, *, commit: bool = True) -> None:
    with get_database(app).session() as session:
        record_event(
            session,
            OutboxEvent,
            type=EVENT_TYPE,
            aggregate_id=marker,
            version=1,
            data={"marker": marker},
        )
        if commit:
            session.commit()
        else:
            session.rollback()


def _pending(app: Flask, marker: str) -> list[OutboxEvent]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.aggregate_id == marker, OutboxEvent.published_at.is_(None)
                )
            )
        )


def _relay(app: Flask) -> int:
    with get_database(app).session() as session:
        return get_bus(app).relay(session)


def _applied_markers(applied: list[Envelope]) -> list[str]:
    return [e["data"]["marker"] for e in applied]


def test_rolled_back_transaction_emits_nothing(pair: tuple[Flask, Flask]) -> None:
    producer, _ = pair
    marker = uuid.uuid4().hex
    _emit(producer, marker, commit=False)
    with get_database(producer).session() as session:
        count = session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.aggregate_id == marker)
        )
    assert count == 0


def test_committed_event_reaches_the_consumer_once(
    pair: tuple[Flask, Flask], consumer_worker: None, applied: list[Envelope]
) -> None:
    producer, _ = pair
    marker = uuid.uuid4().hex
    _emit(producer, marker)
    # The commit kicks the relay; no producer worker runs here, so relay as beat would.
    assert _relay(producer) >= 1
    wait_until(lambda: marker in _applied_markers(applied))
    assert _pending(producer, marker) == []
    assert _applied_markers(applied).count(marker) == 1


def test_event_committed_while_broker_is_down_is_delivered_when_it_is_back(
    pair: tuple[Flask, Flask], broker: EmbeddedRedis, applied: list[Envelope]
) -> None:
    from celery.contrib.testing.worker import start_worker

    producer, consumer = pair
    broker.stop()
    marker = uuid.uuid4().hex
    _emit(producer, marker)  # the change commits; the kick fails quietly
    assert len(_pending(producer, marker)) == 1
    with pytest.raises(Exception):  # noqa: B017, PT011  (kombu's OperationalError)
        _relay(producer)
    assert len(_pending(producer, marker)) == 1, "a failed relay must keep the event"

    broker.start(persist=False)
    assert _relay(producer) >= 1
    assert _pending(producer, marker) == []
    with start_worker(
        get_celery(consumer),
        pool="threads",
        perform_ping_check=False,
        queues=["visits"],
        loglevel="WARNING",
    ):
        wait_until(lambda: marker in _applied_markers(applied))
    assert _applied_markers(applied).count(marker) == 1


def test_event_delivered_twice_is_applied_once(
    pair: tuple[Flask, Flask],
    consumer_worker: None,
    applied: list[Envelope],
    broker: EmbeddedRedis,
) -> None:
    producer, consumer = pair
    marker = uuid.uuid4().hex
    envelope: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": EVENT_TYPE,
        "source": "contacts",
        "aggregate_id": marker,
        "version": 1,
        "occurred_at": "2026-11-29T10:00:00+00:00",
        "data": {"marker": marker},
    }
    bus = get_bus(producer)
    for _ in range(3):
        bus.send("visits", envelope)

    def inbox_rows() -> int:
        with get_database(consumer).session() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(InboxEvent)
                    .where(InboxEvent.event_id == uuid.UUID(envelope["id"]))
                )
                or 0
            )

    wait_until(lambda: marker in _applied_markers(applied))
    # Let the other two deliveries be consumed too before counting.
    queue = redis.Redis.from_url(broker.url())
    wait_until(lambda: queue.llen("visits") == 0 and not queue.hlen("unacked"))
    queue.close()
    assert _applied_markers(applied).count(marker) == 1
    assert inbox_rows() == 1


def test_a_failing_handler_is_retried_and_then_applied_once(
    pair: tuple[Flask, Flask], consumer_worker: None, applied: list[Envelope]
) -> None:
    producer, consumer = pair
    failures: list[str] = []
    remember = get_bus(consumer).handlers[EVENT_TYPE]

    def flaky(session: Session, envelope: Envelope) -> None:
        if envelope["data"]["marker"] not in failures:
            failures.append(envelope["data"]["marker"])
            raise RuntimeError("a passing fault")
        remember(session, envelope)

    get_bus(consumer).handlers = {EVENT_TYPE: flaky}
    marker = uuid.uuid4().hex
    _emit(producer, marker)
    _relay(producer)
    wait_until(lambda: marker in _applied_markers(applied), timeout=30)
    assert failures == [marker]
    assert _applied_markers(applied).count(marker) == 1
