"""Duplicates: candidate pairs of organisations, and a merge that keeps both histories."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from shared.errors import Invalid

from ..models import Organisation, Premises
from . import organisations
from .history import record_change

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
    survivor's."""
    if survivor_id == other_id:
        raise Invalid({"other_id": ["An organisation cannot be merged with itself."]})
    survivor = organisations.get_organisation(session, survivor_id)
    other = organisations.get_organisation(session, other_id)
    if other.archived:
        raise Invalid({"other_id": ["This organisation is archived already."]})
    kept = organisations.snapshot(survivor)
    absorbed = organisations.snapshot(other)
    filled: dict[str, Any] = {
        field: absorbed[field]
        for field in (*organisations.FIELDS, "district")
        if kept.get(field) in (None, "", []) and absorbed.get(field) not in (None, "", [])
    }
    filled["tags"] = list(dict.fromkeys([*kept["tags"], *absorbed["tags"]]))
    filled["needs"] = list(dict.fromkeys([*kept["needs"], *absorbed["needs"]]))
    if kept["notes"] and absorbed["notes"] and absorbed["notes"] not in kept["notes"]:
        filled["notes"] = f"{kept['notes']}\n\n{absorbed['notes']}"

    have = {(role.person_id, role.role) for role in survivor.roles}
    for role in list(other.roles):
        if (role.person_id, role.role) in have:
            session.delete(role)
        else:
            role.organisation = survivor
    for premises in session.scalars(
        select(Premises).where(or_(Premises.owner_id == other.id, Premises.tenant_id == other.id))
    ):
        if premises.owner_id == other.id:
            premises.owner = survivor
        if premises.tenant_id == other.id:
            premises.tenant = survivor
    session.flush()
    session.refresh(survivor, ["roles"])
    session.refresh(other, ["roles"])

    organisations.change(session, survivor, filled, actor=actor)
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
