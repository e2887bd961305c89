"""The event backbone: a transactional outbox, a relay to each subscriber's queue, and a
consumer that applies every event once.

A producer writes events with :func:`record_event` in the same transaction as the change.
The relay (a task on the producer's queue, kicked after each commit and run periodically
by beat) sends each unpublished event to the ``<consumer>.handle_event`` task of every
service whose ``events.HANDLERS`` names its type, then marks it published. Delivery is at
least once; :func:`apply_event` makes it effectively once with an inbox table keyed by
event id, written in the same transaction as the handler's changes.
"""

from __future__ import annotations

import functools
import importlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from flask import Flask
from sqlalchemy import BigInteger, Identity, String, event, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.db import Timestamp, db_session, get_database, new_uuid, utcnow
from shared.settings import SERVICES

log = logging.getLogger(__name__)

Envelope = dict[str, Any]
Handler = Callable[[Session, Envelope], None]

_DIRTY = "quartier.outbox_dirty"


class OutboxMixin:
    """Events waiting to be relayed; ``published_at`` is set once every subscriber has them."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(default=new_uuid, unique=True)
    type: Mapped[str] = mapped_column(String(120))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)


class InboxMixin:
    """Events already applied by this service, so that a redelivery changes nothing."""

    __tablename__ = "inbox"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(40))
    applied_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


def event_models(base: type[Any]) -> tuple[type[OutboxMixin], type[InboxMixin]]:
    """The outbox and inbox models of a service, on its declarative base."""
    outbox = type("OutboxEvent", (OutboxMixin, base), {"__module__": base.__module__})
    inbox = type("InboxEvent", (InboxMixin, base), {"__module__": base.__module__})
    return outbox, inbox


def record_event(
    session: Session,
    outbox: type[OutboxMixin],
    *,
    type: str,
    aggregate_id: Any,
    version: int,
    data: Mapping[str, Any],
) -> None:
    """Add an event to the caller's transaction; it is relayed only if that commits."""
    session.add(
        outbox(  # type: ignore[call-arg]
            type=type, aggregate_id=str(aggregate_id), version=version, payload=dict(data)
        )
    )
    events_written(session)


def events_written(session: Session) -> None:
    """Say that the transaction wrote outbox rows (also with SQL, as a bulk writer does):
    the relay is kicked once it commits."""
    session.info[_DIRTY] = True


def envelope_of(row: OutboxMixin, source: str) -> Envelope:
    return {
        "id": str(row.event_id),
        "type": row.type,
        "source": source,
        "aggregate_id": row.aggregate_id,
        "version": row.version,
        "occurred_at": row.occurred_at.isoformat(),
        "data": row.payload,
    }


@functools.cache
def subscribers(event_type: str) -> tuple[str, ...]:
    """The services whose ``events.HANDLERS`` name this event type."""
    found = []
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.events")
        if event_type in getattr(module, "HANDLERS", {}):
            found.append(name)
    return tuple(found)


Send = Callable[[str, Envelope], None]


def relay_pending(
    session: Session,
    outbox: type[OutboxMixin],
    source: str,
    send: Send,
    batch_size: int = 200,
    find_subscribers: Callable[[str], tuple[str, ...]] = subscribers,
) -> int:
    """Send unpublished events in order; returns how many were published.

    Rows are locked with SKIP LOCKED so that concurrent relays share the work. If sending
    fails (the broker is down), the transaction rolls back and the events stay for the
    next run; what was already sent may be sent again, which consumers tolerate.
    """
    published = 0
    while True:
        rows = session.scalars(
            select(outbox)
            .where(outbox.published_at.is_(None))
            .order_by(outbox.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            session.rollback()
            return published
        try:
            for row in rows:
                envelope = envelope_of(row, source)
                for consumer in find_subscribers(row.type):
                    send(consumer, envelope)
                row.published_at = utcnow()
            session.commit()
        except BaseException:
            session.rollback()
            raise
        published += len(rows)
        if len(rows) < batch_size:
            return published


def apply_event(
    session: Session,
    inbox: type[InboxMixin],
    handlers: Mapping[str, Handler],
    envelope: Envelope,
) -> bool:
    """Apply an event unless this service has applied it already; True if it was applied."""
    table = inbox.__table__  # type: ignore[attr-defined]
    inserted = session.execute(
        insert(table)
        .values(
            event_id=uuid.UUID(envelope["id"]),
            type=envelope["type"],
            source=envelope.get("source", ""),
            applied_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table.c.event_id)
    ).first()
    if inserted is None:
        session.rollback()
        return False
    handler = handlers.get(envelope["type"])
    try:
        if handler is not None:
            handler(session, envelope)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return True


def upsert_projection(
    session: Session, model: type[Any], values: Mapping[str, Any], key: str = "id"
) -> None:
    """Insert or update a projection row, ignoring an event older than what it holds.

    The model needs a ``version`` column; the values must carry the event's version.
    """
    table = model.__table__
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={name: stmt.excluded[name] for name in values if name != key},
        where=table.c.version < stmt.excluded.version,
    )
    session.execute(stmt)


@dataclass
class EventBus:
    service: str
    celery: Celery
    outbox: type[OutboxMixin]
    inbox: type[InboxMixin]
    handlers: Mapping[str, Handler]
    routes: Callable[[str], tuple[str, ...]] = subscribers

    def send(self, consumer: str, envelope: Envelope) -> None:
        self.celery.send_task(
            f"{consumer}.handle_event",
            args=[envelope],
            queue=consumer,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        )

    def relay(self, session: Session) -> int:
        return relay_pending(
            session, self.outbox, self.service, self.send, find_subscribers=self.routes
        )

    def kick(self) -> None:
        """Ask for a relay now; if the broker is down, the periodic relay catches up."""
        try:
            self.celery.send_task(
                f"{self.service}.relay_outbox", queue=self.service, expires=60, retry=False
            )
        except Exception as exc:  # the event is safe in the outbox either way
            log.warning("could not kick the outbox relay: %s", exc)


def init_events(
    app: Flask,
    service: str,
    celery: Celery,
    outbox: type[OutboxMixin],
    inbox: type[InboxMixin],
    handlers: Mapping[str, Handler],
) -> EventBus:
    bus = EventBus(service, celery, outbox, inbox, handlers)
    app.extensions["quartier.events"] = bus

    @celery.task(name=f"{service}.relay_outbox", ignore_result=True, shared=False)
    def relay_outbox() -> int:
        return bus.relay(db_session())

    # A handler that fails (a bug, a deadlock) leaves no inbox row: the event is retried
    # with growing pauses rather than lost.
    @celery.task(
        name=f"{service}.handle_event",
        ignore_result=True,
        shared=False,
        autoretry_for=(Exception,),
        retry_backoff=1,
        retry_backoff_max=600,
        max_retries=15,
    )
    def handle_event(envelope: Envelope) -> bool:
        return apply_event(db_session(), bus.inbox, bus.handlers, envelope)

    @event.listens_for(get_database(app).sessionmaker, "after_commit")
    def _kick_after_commit(session: Session) -> None:
        if session.info.pop(_DIRTY, False):
            bus.kick()

    @event.listens_for(get_database(app).sessionmaker, "after_rollback")
    def _forget_after_rollback(session: Session) -> None:
        session.info.pop(_DIRTY, None)

    return bus


def get_bus(app: Flask) -> EventBus:
    return app.extensions["quartier.events"]
