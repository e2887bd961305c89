"""Duplicates: candidate pairs of organisations, and a merge that keeps both histories."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from shared.errors import Conflict, Invalid, NotFound

from ..models import OWNER_KINDS, Organisation, Premises, Role
from . import organisations, people
from . import premises as premises_
from .history import lock, record_change
from .suppressions import refuse_suppressed

MERGED = "merged"
MERGED_INTO = "merged_into"


@dataclass(frozen=True)
class Candidate:
    first: Organisation
    second: Organisation
    reasons: list[str]


def candidates(
    session: Session, *, limit: int = 100, organisation_id: uuid.UUID | None = None
) -> list[Candidate]:
    """Pairs that are probably one organisation: the same folded name (without legal form)
    at the same address (or one without address), the same email, or the same phone.

    Each reason is an equi-join of its own (an OR in one join would compare every pair)."""
    a, b = aliased(Organisation), aliased(Organisation)
    reasons = (
        (
            "name",
            and_(
                a.match_name == b.match_name,
                a.match_name != "",
                or_(
                    a.match_address == b.match_address,
                    a.match_address == "",
                    b.match_address == "",
                ),
            ),
        ),
        ("email", a.email == b.email),
        ("phone", a.match_phone == b.match_phone),
    )
    parts = []
    for reason, condition in reasons:
        part = (
            select(a.id.label("first"), b.id.label("second"), literal(reason).label("reason"))
            .join(b, and_(condition, a.id < b.id))
            .where(a.archived.is_(False), b.archived.is_(False))
        )
        if organisation_id is not None:
            part = part.where(or_(a.id == organisation_id, b.id == organisation_id))
        parts.append(part)
    pairs = union_all(*parts).subquery()
    rows = session.execute(
        select(pairs.c.first, pairs.c.second, func.array_agg(pairs.c.reason))
        .group_by(pairs.c.first, pairs.c.second)
        .order_by(pairs.c.first, pairs.c.second)
        .limit(limit)
    ).all()
    ids = {id_ for first, second, _ in rows for id_ in (first, second)}
    orgs = {o.id: o for o in session.scalars(select(Organisation).where(Organisation.id.in_(ids)))}
    order = ("name", "email", "phone")
    return [
        Candidate(orgs[first], orgs[second], sorted(found, key=order.index))
        for first, second, found in rows
    ]


def merge(
    session: Session, survivor_id: uuid.UUID, other_id: uuid.UUID, *, actor: str
) -> Organisation:
    """Fold ``other`` into ``survivor``: empty fields filled, tags and needs joined, people
    and premises moved; ``other`` is archived, and its history stays readable through the
    survivor's.

    Both organisations are locked (in id order, so that a merge the other way round waits
    rather than deadlocks) before anything is checked; the people and premises that move
    are changed through their own use cases, with history, version and event."""
    if survivor_id == other_id:
        raise Invalid({"other_id": ["An organisation cannot be merged with itself."]})
    # The survivor may take the other's email: the address is held (shared) before the two
    # are locked, as a create or change that gives it holds it, so an erasure of it either
    # clears the other first or, after the merge, finds the survivor with it too.
    given = session.scalar(select(Organisation.email).where(Organisation.id == other_id))
    refuse_suppressed(session, given)
    locked = organisations.lock_organisations(session, {survivor_id, other_id})
    survivor, other = locked.get(survivor_id), locked.get(other_id)
    if survivor is None or other is None:
        raise NotFound("No such organisation.")
    if survivor.archived:
        raise Conflict(
            "This organisation is archived (merged into another, perhaps meanwhile); "
            "restore it first or merge into the one it went into."
        )
    if other.archived:
        raise Invalid({"other_id": ["This organisation is archived already."]})
    if survivor.kind not in OWNER_KINDS and organisations.owns_premises(session, other):
        raise Conflict(
            f"{other.name!r} owns premises, which belong to a landlord or a housing company, "
            f"not to a {survivor.kind}: keep {other.name!r} and merge {survivor.name!r} into "
            "it, or give the premises another owner first.",
            code="owner_kind",
        )
    kept = organisations.snapshot(survivor)
    absorbed = organisations.snapshot(other)
    filled: dict[str, Any] = {
        field: absorbed[field]
        for field in (*organisations.FIELDS, "district")
        if kept.get(field) in (None, "", []) and absorbed.get(field) not in (None, "", [])
    }
    if filled.get("email") not in (None, given):
        raise Conflict("The organisation's email was changed meanwhile; merge again.")
    filled["tags"] = list(dict.fromkeys([*kept["tags"], *absorbed["tags"]]))
    filled["needs"] = list(dict.fromkeys([*kept["needs"], *absorbed["needs"]]))
    if kept["notes"] and absorbed["notes"] and absorbed["notes"] not in kept["notes"]:
        filled["notes"] = f"{kept['notes']}\n\n{absorbed['notes']}"

    # No one gives a role at ``other`` meanwhile: that locks ``other`` first.
    at_other = session.scalars(select(Role.person_id).where(Role.organisation_id == other.id))
    for person in people.lock_people(session, set(at_other)):
        roles = {
            (survivor.id if role.organisation_id == other.id else role.organisation_id, role.role)
            for role in person.roles
        }
        people.change_person(
            session,
            person,
            {"roles": [{"organisation_id": org_id, "role": role} for org_id, role in roles]},
            actor=actor,
        )
    moving = lock(
        session,
        Premises,
        set(
            session.scalars(
                select(Premises.id).where(
                    or_(Premises.owner_id == other.id, Premises.tenant_id == other.id)
                )
            )
        ),
    )
    for premises in moving:
        moved: dict[str, Any] = {}
        if premises.owner_id == other.id:
            moved["owner_id"] = survivor.id
        if premises.tenant_id == other.id:
            moved["tenant_id"] = survivor.id
        premises_.change(session, premises, moved, actor=actor)
    session.flush()
    session.refresh(survivor, ["roles"])
    session.refresh(other, ["roles"])

    organisations.change(session, survivor, filled, actor=actor, merged=other)
    record_change(
        session,
        entity_type=organisations.ENTITY,
        entity_id=survivor.id,
        actor=actor,
        action=MERGED,
        before=None,
        after={"merged_from": str(other.id), "name": other.name},
    )
    organisations.refresh_search(other)
    organisations.archive_in_transaction(session, other, actor=actor)
    record_change(
        session,
        entity_type=organisations.ENTITY,
        entity_id=other.id,
        actor=actor,
        action=MERGED_INTO,
        before=None,
        after={"merged_into": str(survivor.id), "name": survivor.name},
    )
    session.commit()
    return survivor
