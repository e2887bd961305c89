"""People and their roles at organisations."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import sqlstate
from shared.errors import Conflict, Invalid, NotFound
from shared.events import record_event

from ..models import ROLES, Organisation, OutboxEvent, Person, Role
from ..normalise import fold_email, index_terms, tsvector
from .history import (
    UNIQUE_VIOLATION,
    archive,
    get_or_404,
    lock,
    record_change,
    record_update,
)
from .organisations import lock_organisations, order, paginate
from .organisations import refresh_search as refresh_organisation_search
from .suppressions import refuse_suppressed

ENTITY = "person"
FIELDS = ("first_name", "last_name", "email", "phone", "notes")
SORTS = {
    "last_name": Person.last_name,
    "first_name": Person.first_name,
    "created_at": Person.created_at,
    "updated_at": Person.updated_at,
}


def snapshot(person: Person) -> dict[str, Any]:
    data: dict[str, Any] = {field: getattr(person, field) for field in FIELDS}
    data["roles"] = sorted(
        ({"organisation_id": str(r.organisation_id), "role": r.role} for r in person.roles),
        key=lambda r: (r["organisation_id"], r["role"]),
    )
    data["archived"] = person.archived
    return data


def event_data(person: Person) -> dict[str, Any]:
    return {
        "id": str(person.id),
        "first_name": person.first_name,
        "last_name": person.last_name,
        "email": person.email,
        "phone": person.phone,
        "organisation_ids": sorted({str(role.organisation_id) for role in person.roles}),
        "archived": person.archived,
    }


def refresh_search(person: Person) -> None:
    terms = index_terms(person.first_name, person.last_name, person.email)
    person.search_text = " ".join(terms)
    person.search_vector = tsvector((terms, "A"))


def _wanted_roles(data: Mapping[str, Any]) -> set[tuple[uuid.UUID, str]] | None:
    if "roles" not in data:
        return None
    return {(uuid.UUID(str(r["organisation_id"])), r["role"]) for r in data["roles"] or []}


def _apply(session: Session, person: Person, data: Mapping[str, Any]) -> set[Organisation]:
    """Set fields and roles; returns the organisations whose search text names this person
    and has to be written again: all of theirs if the name changed, else those whose roles
    changed."""
    values = dict(data)
    for field in ("first_name", "last_name", "phone"):
        if field in values:
            values[field] = (values[field] or "").strip() or (None if field == "phone" else "")
    if "email" in values:
        values["email"] = fold_email(values["email"])
    if "notes" in values:
        values["notes"] = values["notes"] or ""
    name = (person.first_name, person.last_name)
    for field in FIELDS:
        if field in values:
            setattr(person, field, values[field])
    if not (person.first_name or person.last_name):
        emptied = "first_name" if "last_name" not in values else "last_name"
        raise Invalid({emptied: ["A person needs a first or a last name."]})
    touched: set[Organisation] = set()
    if name != (person.first_name, person.last_name):
        touched = {role.organisation for role in person.roles}
    wanted = _wanted_roles(values)
    if wanted is not None:
        for _, role in wanted:
            if role not in ROLES:
                raise Invalid({"roles": [f"Role must be one of: {', '.join(ROLES)}."]})
        ids = {org_id for org_id, _ in wanted}
        orgs = {
            o.id: o for o in session.scalars(select(Organisation).where(Organisation.id.in_(ids)))
        }
        missing = ids - orgs.keys()
        if missing:
            raise Invalid({"roles": [f"No such organisation: {', '.join(map(str, missing))}."]})
        have = {(held.organisation_id, held.role): held for held in person.roles}
        for key, held in have.items():
            if key not in wanted:
                touched.add(held.organisation)
                person.roles.remove(held)
        for org_id, role_name in sorted(wanted - have.keys(), key=str):
            touched.add(orgs[org_id])
            person.roles.append(Role(organisation=orgs[org_id], role=role_name))
    refresh_search(person)
    return touched


def _publish(session: Session, person: Person, verb: str) -> None:
    record_event(
        session,
        OutboxEvent,
        type=f"contacts.person.{verb}",
        aggregate_id=person.id,
        version=person.version,
        data=event_data(person),
    )


def refresh_organisations(session: Session, orgs: set[Organisation]) -> None:
    """Write the search text of organisations whose people changed (their names are in it);
    no edit of the organisation (no version, history or event)."""
    _flush(session)
    for org in orgs:
        session.refresh(org, ["roles"])
        refresh_organisation_search(org)


def _flush(session: Session) -> None:
    """Write the roles. The person is locked, so no one else changes their roles; should a
    writer that does not lock give them a role first, that is a conflict, not a 500."""
    try:
        session.flush()
    except IntegrityError as error:
        if sqlstate(error) != UNIQUE_VIOLATION:
            raise
        session.rollback()
        raise Conflict(
            "The person's roles were changed meanwhile; reload them and apply your change again."
        ) from None


def _lock_organisations(session: Session, data: Mapping[str, Any]) -> None:
    """Lock the organisations a new person gets roles at: their search text names the
    person, and a concurrent change of theirs must not be written over."""
    wanted = _wanted_roles(data) or set()
    lock_organisations(session, {org_id for org_id, _ in wanted})


def add_person(session: Session, data: Mapping[str, Any], *, actor: str) -> Person:
    _lock_organisations(session, data)
    person = Person(first_name="", last_name="", notes="", version=1, archived=False)
    person.roles = []
    session.add(person)
    touched = _apply(session, person, data)
    session.flush()
    refresh_organisations(session, touched)
    record_change(
        session,
        entity_type=ENTITY,
        entity_id=person.id,
        actor=actor,
        action="created",
        before=None,
        after=snapshot(person),
    )
    _publish(session, person, "created")
    return person


def create_person(session: Session, data: Mapping[str, Any], *, actor: str) -> Person:
    refuse_suppressed(session, data.get("email"))
    person = add_person(session, data, actor=actor)
    session.commit()
    return person


def get_person(session: Session, person_id: uuid.UUID) -> Person:
    return get_or_404(session, Person, person_id, "person")


def lock_people(session: Session, person_ids: Iterable[uuid.UUID]) -> list[Person]:
    """These people, locked for a change in id order (see history.lock)."""
    return lock(session, Person, set(person_ids))


def lock_for_change(session: Session, person_id: uuid.UUID, data: Mapping[str, Any]) -> Person:
    """The person locked for a change, after the organisations of their roles and of the
    roles asked for (see :func:`lock_with_organisations`), or a 404."""
    wanted = {org_id for org_id, _ in _wanted_roles(data) or set()}
    _, found = lock_with_organisations(session, {person_id}, wanted)
    if not found:
        raise NotFound("No such person.")
    return found[0]


def lock_with_organisations(
    session: Session,
    person_ids: Collection[uuid.UUID],
    organisation_ids: Collection[uuid.UUID] = (),
    attempts: int = 3,
) -> tuple[dict[uuid.UUID, Organisation], list[Person]]:
    """These people locked for a change (missing ones left out), after the organisations of
    their roles and ``organisation_ids`` (organisations are locked before people, see
    history.lock). Their roles are read before the lock; if they changed until it was
    granted, the locks are let go and taken once more. In a savepoint, so that what the
    caller's transaction did before stays."""
    for _ in range(attempts):
        savepoint = session.begin_nested()
        current = set(
            session.scalars(
                select(Role.organisation_id).where(Role.person_id.in_(list(person_ids)))
            )
        )
        orgs = lock_organisations(session, current | set(organisation_ids))
        found = lock_people(session, person_ids)
        if all(role.organisation_id in orgs for person in found for role in person.roles):
            savepoint.commit()  # the locks stay with the transaction
            return orgs, found
        savepoint.rollback()  # and the locks taken in it
    raise Conflict("The person's roles keep changing meanwhile; try again.")


def change_person(session: Session, person: Person, data: Mapping[str, Any], *, actor: str) -> bool:
    """Update a person locked by the caller (with the organisations of their old and new
    roles), in the caller's transaction: history, version and event as any change.
    True if anything changed."""
    before = snapshot(person)
    touched = _apply(session, person, data)
    _flush(session)  # new roles get their organisation_id, which the snapshot names
    if not record_update(
        session, person, before, snapshot(person), entity_type=ENTITY, actor=actor
    ):
        return False
    refresh_organisations(session, touched)
    _publish(session, person, "updated")
    return True


def update_person(
    session: Session, person_id: uuid.UUID, data: Mapping[str, Any], *, actor: str
) -> Person:
    refuse_suppressed(session, data.get("email"))
    person = lock_for_change(session, person_id, data)
    change_person(session, person, data, actor=actor)
    session.commit()
    return person


def set_archived(session: Session, person_id: uuid.UUID, archived: bool, *, actor: str) -> Person:
    """Archive or restore a person; the organisations of their roles are found by the
    person's name only while the person is not archived."""
    person = lock_for_change(session, person_id, {})
    if archive(session, person, archived, entity_type=ENTITY, actor=actor):
        refresh_organisations(session, {role.organisation for role in person.roles})
        _publish(session, person, "archived" if archived else "updated")
    session.commit()
    return person


@dataclass(frozen=True)
class PersonFilter:
    organisation_id: uuid.UUID | None = None
    role: Sequence[str] = ()
    email: str | None = None
    archived: bool | None = False
    sort: str = "last_name"


def list_people(
    session: Session, criteria: PersonFilter, *, page: int, per_page: int
) -> tuple[list[Person], int]:
    query = select(Person)
    if criteria.organisation_id or criteria.role:
        roles = select(Role.person_id)
        if criteria.organisation_id:
            roles = roles.where(Role.organisation_id == criteria.organisation_id)
        if criteria.role:
            roles = roles.where(Role.role.in_(criteria.role))
        query = query.where(Person.id.in_(roles))
    if criteria.email:
        query = query.where(Person.email == fold_email(criteria.email))
    if criteria.archived is not None:
        query = query.where(Person.archived.is_(criteria.archived))
    query = order(query, criteria.sort, SORTS, Person.id)
    return paginate(session, query, page, per_page)
