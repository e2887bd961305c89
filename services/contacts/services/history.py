"""The change history of every record: who, when, what (before and after)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import get_or_not_found

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


def record_update(
    session: Session,
    record: Versioned,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    entity_type: str,
    actor: str,
) -> dict[str, Any] | None:
    """Bump the version and log the changed fields; None (and nothing logged) if none."""
    old, new = diff(before, after)
    if not new:
        return None
    record.version += 1
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


def archive(
    session: Session, record: Versioned, archived: bool, *, entity_type: str, actor: str
) -> bool:
    """Archive or restore (nothing is deleted); True if that changed anything."""
    if record.archived == archived:
        return False
    record.archived = archived
    record.version += 1
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
