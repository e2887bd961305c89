"""The change history of every record: who, when, what (before and after)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import get_or_not_found, sqlstate, utcnow
from shared.errors import Conflict, NotFound

from ..models import Change

T = TypeVar("T")


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that changed, as (before, after)."""
    keys = [key for key in after if before.get(key) != after.get(key)]
    return {key: before.get(key) for key in keys}, {key: after.get(key) for key in keys}


def record_change(
    session: Session,
    *,
    entity_type: str,
    entity_id: Any,
    actor: str,
    action: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """Add a history entry to the caller's transaction."""
    session.add(
        Change(
            entity_type=entity_type,
            entity_id=str(entity_id),
            actor=actor,
            action=action,
            before=dict(before) if before is not None else None,
            after=dict(after) if after is not None else None,
        )
    )


def history(session: Session, entity_type: str, entity_id: Any) -> list[Change]:
    """A record's history, with that of every record merged into it, oldest first."""
    ids = {str(entity_id)}
    frontier = set(ids)
    while frontier:
        merged = session.scalars(
            select(Change.after["merged_from"].astext).where(
                Change.entity_type == entity_type,
                Change.entity_id.in_(frontier),
                Change.action == "merged",
            )
        )
        frontier = {value for value in merged if value} - ids
        ids |= frontier
    return list(
        session.scalars(
            select(Change)
            .where(Change.entity_type == entity_type, Change.entity_id.in_(ids))
            .order_by(Change.id)
        )
    )


class Versioned(Protocol):
    id: Any
    version: int
    archived: bool
    updated_at: datetime


def record_update(
    session: Session,
    record: Versioned,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    entity_type: str,
    actor: str,
) -> dict[str, Any] | None:
    """Bump the version and log the changed fields; None (and nothing logged) if none.
    ``updated_at`` moves with the version, and only with it: a write that changes nothing
    (a PATCH of the same values, or search text written again) is no update."""
    old, new = diff(before, after)
    if not new:
        return None
    _bump(record)
    record_change(
        session,
        entity_type=entity_type,
        entity_id=record.id,
        actor=actor,
        action="updated",
        before=old,
        after=new,
    )
    return new


def _bump(record: Versioned) -> None:
    record.version += 1
    record.updated_at = utcnow()


def archive(
    session: Session, record: Versioned, archived: bool, *, entity_type: str, actor: str
) -> bool:
    """Archive or restore (nothing is deleted); True if that changed anything."""
    if record.archived == archived:
        return False
    record.archived = archived
    _bump(record)
    record_change(
        session,
        entity_type=entity_type,
        entity_id=record.id,
        actor=actor,
        action="archived" if archived else "restored",
        before={"archived": not archived},
        after={"archived": archived},
    )
    return True


def get_or_404(session: Session, model: type[T], record_id: Any, what: str) -> T:
    return get_or_not_found(session, model, record_id, f"No such {what}.")


# Every write locks the rows it changes before it reads what it checks (a version, whether
# a record is archived, an organisation's kind), so that concurrent writers take turns and
# the second sees what the first committed. Always in this order, each kind by id, so that
# two writers never wait for each other: districts (a rename, and the writes that give an
# organisation one, see vocab.hold_district), organisations, then people, then premises.


def lock(session: Session, model: type[T], ids: Collection[Any], *, share: bool = False) -> list[T]:
    """These rows, locked until the transaction ends and read afresh (what the session held
    of them is replaced), in id order; missing ids are left out.

    ``FOR NO KEY UPDATE`` (what PostgreSQL's own UPDATE takes) lets other transactions
    insert rows that refer to the locked ones (a role, premises) but not change or lock
    them; ``share`` takes ``FOR SHARE`` instead, for a row that is read, not changed (an
    owner whose kind must not change meanwhile)."""
    if not ids:
        return []
    (column,) = inspect(model).primary_key
    query = (
        select(model)
        .where(column.in_(list(ids)))
        .order_by(column)
        .with_for_update(of=model, read=share, key_share=not share)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query).unique())


def lock_or_404(session: Session, model: type[T], record_id: Any, what: str) -> T:
    """One record, locked for a change (see :func:`lock`), or a 404."""
    found = lock(session, model, [record_id])
    if not found:
        raise NotFound(f"No such {what}.")
    return found[0]


UNIQUE_VIOLATION = "23505"


@contextmanager
def unique_or_conflict(session: Session, detail: str) -> Iterator[None]:
    """Write what the block adds in a savepoint. A check for an existing row and the insert
    are two steps; a concurrent transaction that inserts the same between them makes the
    insert a unique violation, which is then the same 409 as the check's."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError as error:
        if sqlstate(error) != UNIQUE_VIOLATION:
            raise
        raise Conflict(detail) from None
