"""Premises (Gewerbeflächen) and the query for vacant ones."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import Invalid

from ..models import OWNER_KINDS, PREMISES_STATUSES, PREMISES_USES, District, Organisation, Premises
from .history import archive, get_or_404, lock_or_404, record_change, record_update
from .organisations import lock_organisations, order, paginate
from .vocab import district_by_name, districts_named

ENTITY = "premises"
FIELDS = (
    "street",
    "house_number",
    "postcode",
    "city",
    "floor_area",
    "use",
    "status",
    "rent_per_m2",
    "available_from",
    "notes",
)
SORTS = {
    "floor_area": Premises.floor_area,
    "rent_per_m2": Premises.rent_per_m2,
    "available_from": Premises.available_from,
    "street": Premises.street,
    "created_at": Premises.created_at,
}


def _json(value: Any) -> Any:
    """A value as the history records it. An amount (floor area, rent) is a JSON number, as
    the API gives it (PremisesOutSchema), not the Decimal's text: "85.50" in the history
    next to 85.5 in the record read as two kinds of value (entries recorded as text are
    converted by a migration)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def snapshot(premises: Premises) -> dict[str, Any]:
    data = {field: _json(getattr(premises, field)) for field in FIELDS}
    data["district"] = premises.district.name if premises.district else None
    data["owner_id"] = str(premises.owner.id) if premises.owner else None
    data["tenant_id"] = str(premises.tenant.id) if premises.tenant else None
    data["archived"] = premises.archived
    return data


def _organisation(session: Session, value: Any, field: str) -> Organisation:
    org = session.get(Organisation, uuid.UUID(str(value)))
    if org is None:
        raise Invalid({field: ["No such organisation."]})
    return org


def _apply(session: Session, premises: Premises, data: Mapping[str, Any]) -> None:
    values = dict(data)
    if "street" in values:
        values["street"] = (values["street"] or "").strip()
        if not values["street"]:
            raise Invalid({"street": ["Must not be empty."]})
    if "use" in values and values["use"] not in PREMISES_USES:
        raise Invalid({"use": [f"Must be one of: {', '.join(PREMISES_USES)}."]})
    if "status" in values and values["status"] not in PREMISES_STATUSES:
        raise Invalid({"status": [f"Must be one of: {', '.join(PREMISES_STATUSES)}."]})
    if "notes" in values:
        values["notes"] = values["notes"] or ""
    for field in FIELDS:
        if field in values:
            setattr(premises, field, values[field])
    if "district" in values:
        held = {premises.district_id} if premises.district_id else set()
        premises.district = district_by_name(session, values["district"], held=held)
    if "owner_id" in values:
        owner = _organisation(session, values["owner_id"], "owner_id")
        if owner.kind not in OWNER_KINDS:
            raise Invalid({"owner_id": ["The owner must be a landlord or a housing company."]})
        premises.owner = owner
    if "tenant_id" in values:
        premises.tenant = (
            _organisation(session, values["tenant_id"], "tenant_id")
            if values["tenant_id"]
            else None
        )
    if premises.status == "vacant" and premises.tenant is not None:
        raise Invalid({"tenant_id": ["Vacant premises have no tenant."]})


def _lock_owner(session: Session, data: Mapping[str, Any]) -> None:
    """Hold the new owner (FOR SHARE) until the commit, so that its kind, checked here,
    cannot change meanwhile (organisations are locked before premises, see history.lock)."""
    value = data.get("owner_id")
    if value:
        try:
            owner_id = uuid.UUID(str(value))
        except ValueError:
            return  # _apply says which field is wrong
        lock_organisations(session, [owner_id], share=True)


def create_premises(session: Session, data: Mapping[str, Any], *, actor: str) -> Premises:
    _lock_owner(session, data)
    premises = Premises(notes="", version=1, archived=False, status="vacant")
    premises.tenant = None
    _apply(session, premises, data)
    session.add(premises)
    session.flush()
    record_change(
        session,
        entity_type=ENTITY,
        entity_id=premises.id,
        actor=actor,
        action="created",
        before=None,
        after=snapshot(premises),
    )
    session.commit()
    return premises


def get_premises(session: Session, premises_id: uuid.UUID) -> Premises:
    return get_or_404(session, Premises, premises_id, "premises")


def lock_premises(session: Session, premises_id: uuid.UUID) -> Premises:
    """The premises, locked for a change until the commit and read afresh (or a 404)."""
    return lock_or_404(session, Premises, premises_id, "premises")


def change(session: Session, premises: Premises, data: Mapping[str, Any], *, actor: str) -> bool:
    """Update premises locked by the caller, in the caller's transaction; True if anything
    changed (then the version is one up and the history has the change)."""
    before = snapshot(premises)
    _apply(session, premises, data)
    return (
        record_update(
            session, premises, before, snapshot(premises), entity_type=ENTITY, actor=actor
        )
        is not None
    )


def update_premises(
    session: Session, premises_id: uuid.UUID, data: Mapping[str, Any], *, actor: str
) -> Premises:
    _lock_owner(session, data)
    premises = lock_premises(session, premises_id)
    change(session, premises, data, actor=actor)
    session.commit()
    return premises


def set_archived(
    session: Session, premises_id: uuid.UUID, archived: bool, *, actor: str
) -> Premises:
    premises = lock_premises(session, premises_id)
    archive(session, premises, archived, entity_type=ENTITY, actor=actor)
    session.commit()
    return premises


@dataclass(frozen=True)
class PremisesFilter:
    status: Sequence[str] = ()
    district: Sequence[str] = ()
    use: Sequence[str] = ()
    min_area: Decimal | None = None
    max_area: Decimal | None = None
    owner_id: uuid.UUID | None = None
    archived: bool | None = False
    sort: str = "floor_area"


def named_filter(session: Session, criteria: PremisesFilter) -> PremisesFilter:
    """The filter with its districts as a user typed them (see organisations.named_filter)."""
    if not criteria.district:
        return criteria
    return replace(criteria, district=districts_named(session, criteria.district))


def list_premises(
    session: Session, criteria: PremisesFilter, *, page: int, per_page: int
) -> tuple[list[Premises], int]:
    query = select(Premises)
    if criteria.status:
        query = query.where(Premises.status.in_(criteria.status))
    if criteria.district:
        query = query.where(
            Premises.district_id.in_(
                select(District.id).where(District.name.in_(criteria.district))
            )
        )
    if criteria.use:
        query = query.where(Premises.use.in_(criteria.use))
    if criteria.min_area is not None:
        query = query.where(Premises.floor_area >= criteria.min_area)
    if criteria.max_area is not None:
        query = query.where(Premises.floor_area <= criteria.max_area)
    if criteria.owner_id is not None:
        query = query.where(Premises.owner_id == criteria.owner_id)
    if criteria.archived is not None:
        query = query.where(Premises.archived.is_(criteria.archived))
    query = order(query, criteria.sort, SORTS, Premises.id)
    return paginate(session, query, page, per_page)
