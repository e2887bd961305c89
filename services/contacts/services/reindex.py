"""The folded text of every record made again (``quartier contacts reindex``): after the
folding changes (see normalise.py), records written before are found and matched as new
ones are. Derived data only: no version, history or event, and ``updated_at`` stays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..models import Organisation, Person, Role
from . import organisations, people

BATCH = 500


def reindex(session: Session, *, batch: int = BATCH) -> tuple[int, int]:
    """Refold every organisation and person, in batches by id, a commit each; returns
    how many organisations and people."""
    return (
        _refold(
            session,
            Organisation,
            organisations.refresh_search,
            [selectinload(Organisation.roles).selectinload(Role.person)],
            batch,
        ),
        _refold(session, Person, people.refresh_search, [], batch),
    )


def _refold(
    session: Session,
    model: type[Organisation] | type[Person],
    refresh: Callable[[Any], None],
    options: list[Any],
    batch: int,
) -> int:
    done, last = 0, None
    while True:
        query = select(model).options(*options).order_by(model.id).limit(batch)
        if last is not None:
            query = query.where(model.id > last)
        records: list[Any] = list(session.scalars(query))
        if not records:
            return done
        for record in records:
            refresh(record)
        session.commit()
        session.expunge_all()
        done += len(records)
        last = records[-1].id
