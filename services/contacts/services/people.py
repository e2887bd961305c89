"""People and their roles at organisations."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import Invalid
from shared.events import record_event

from ..models import ROLES, Organisation, OutboxEvent, Person, Role
from ..normalise import fold_email, index_terms, tsvector
from .history import archive, get_or_404, record_change, record_update
from .organisations import order, paginate
from .organisations import refresh_search as refresh_organisation_search

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


def _apply(session: Session, person: Person, data: Mapping[str, Any]) -> set[Organisation]:
    """Set fields and roles; returns the organisations whose search text names this person."""
    values = dict(data)
    for field in ("first_name", "last_name", "phone"):
        if field in values:
            values[field] = (values[field] or "").strip() or (None if field == "phone" else "")
    if "email" in values:
        values["email"] = fold_email(values["email"])
    if "notes" in values:
        values["notes"] = values["notes"] or ""
    for field in FIELDS:
        if field in values:
            setattr(person, field, values[field])
    if not (person.first_name or person.last_name):
        emptied = "first_name" if "last_name" not in values else "last_name"
        raise Invalid({emptied: ["A person needs a first or a last name."]})
    touched = {role.organisation for role in person.roles}
    if "roles" in values:
        wanted = {(uuid.UUID(str(r["organisation_id"])), r["role"]) for r in values["roles"]}
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
        have = {(role.organisation_id, role.role): role for role in person.roles}
        for key, role in have.items():
            if key not in wanted:
                person.roles.remove(role)
        for org_id, role_name in wanted:
            if (org_id, role_name) not in have:
                person.roles.append(Role(organisation=orgs[org_id], role=role_name))
        touched |= set(orgs.values())
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


def _refresh_organisations(session: Session, orgs: set[Organisation]) -> None:
    session.flush()
    for org in orgs:
        session.refresh(org, ["roles"])
        refresh_organisation_search(org)


def add_person(session: Session, data: Mapping[str, Any], *, actor: str) -> Person:
    person = Person(first_name="", last_name="", notes="", version=1, archived=False)
    person.roles = []
    session.add(person)
    touched = _apply(session, person, data)
    session.flush()
    _refresh_organisations(session, touched)
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
    person = add_person(session, data, actor=actor)
    session.commit()
    return person


def get_person(session: Session, person_id: uuid.UUID) -> Person:
    return get_or_404(session, Person, person_id, "person")


def update_person(
    session: Session, person_id: uuid.UUID, data: Mapping[str, Any], *, actor: str
) -> Person:
    person = get_person(session, person_id)
    before = snapshot(person)
    touched = _apply(session, person, data)
    if record_update(session, person, before, snapshot(person), entity_type=ENTITY, actor=actor):
        _refresh_organisations(session, touched)
        _publish(session, person, "updated")
    session.commit()
    return person


def set_archived(session: Session, person_id: uuid.UUID, archived: bool, *, actor: str) -> Person:
    person = get_person(session, person_id)
    if archive(session, person, archived, entity_type=ENTITY, actor=actor):
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
