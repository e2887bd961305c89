"""Organisations: the register's businesses, landlords, housing companies and partners."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from shared.db import page_offset
from shared.errors import Conflict, Invalid
from shared.events import record_event

from ..models import (
    ORGANISATION_KINDS,
    ORGANISATION_STATUSES,
    OWNER_KINDS,
    District,
    Organisation,
    OutboxEvent,
    Premises,
    organisation_needs,
)
from ..normalise import (
    fold_email,
    index_terms,
    match_address,
    match_name,
    match_phone,
    unique,
    weighted_tsvectors,
)
from .history import archive, get_or_404, lock, lock_or_404, record_change, record_update
from .suppressions import refuse_suppressed
from .vocab import district_by_name, districts_named, hold_district, needs_by_key, needs_named

ENTITY = "organisation"

# Fields a client sets directly; district and needs are resolved by name / key.
FIELDS = (
    "kind",
    "name",
    "legal_form",
    "sector",
    "wz_code",
    "street",
    "house_number",
    "postcode",
    "city",
    "latitude",
    "longitude",
    "website",
    "email",
    "phone",
    "employees",
    "status",
    "tags",
    "notes",
)
TEXT_FIELDS = (
    "legal_form",
    "sector",
    "wz_code",
    "street",
    "house_number",
    "postcode",
    "city",
    "website",
    "email",
    "phone",
)
SORTS = {
    # German order, as a phone book sorts (DIN 5007-2): by the folded name the application
    # writes (normalise.match_name: case, accents and punctuation aside, ä as ae, ß as ss,
    # without the legal form), then as written. The database has no ICU collation that
    # would do this, and no column holds the name folded with ä as a (DIN 5007-1).
    "name": (Organisation.match_name, Organisation.name),
    "created_at": Organisation.created_at,
    "updated_at": Organisation.updated_at,
    "postcode": Organisation.postcode,
    "status": Organisation.status,
    "kind": Organisation.kind,
}


EVENT_FIELDS = (
    "name",
    "kind",
    "status",
    "district",
    "street",
    "house_number",
    "postcode",
    "city",
    "email",
    "phone",
    "needs",
    "tags",
    "archived",
)


def snapshot(org: Organisation) -> dict[str, Any]:
    """The record as plain JSON values: history, events and exports read this."""
    data: dict[str, Any] = {field: getattr(org, field) for field in FIELDS}
    data["tags"] = list(org.tags or [])
    data["district"] = org.district.name if org.district else None
    data["needs"] = [need.key for need in org.needs]
    data["archived"] = org.archived
    return data


def event_payload(organisation_id: Any, snap: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(organisation_id), **{key: snap[key] for key in EVENT_FIELDS}}


def event_data(org: Organisation) -> dict[str, Any]:
    return event_payload(org.id, snapshot(org))


def refresh_search(org: Organisation) -> None:
    """Write the folded search text and the weighted tsvector (names weigh most)."""
    org.search_text, org.search_vector, org.name_vector = search_fields(
        org.name,
        org.legal_form,
        org.street,
        org.sector,
        org.city,
        org.district.name if org.district else None,
        org.tags,
        [
            f"{role.person.first_name} {role.person.last_name}"
            for role in org.roles
            if not role.person.archived
        ],
    )
    org.match_name = match_name(org.name)
    org.match_address = match_address(org.street, org.house_number)
    org.match_phone = match_phone(org.phone)


def search_fields(
    name: str,
    legal_form: str | None,
    street: str | None,
    sector: str | None,
    city: str | None,
    district: str | None,
    tags: Sequence[str] | None,
    people: Sequence[str] = (),
) -> tuple[str, str, str]:
    """(search text, tsvector, names' tsvector): names weigh A; street, sector, place, tags
    and people B."""
    names = index_terms(name, legal_form)
    rest = index_terms(street, sector, city, district, *(tags or []), *people)
    vector, name_vector = weighted_tsvectors(names, rest)
    return " ".join([*names, *rest]), vector, name_vector


def cleaned(data: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as they are stored: text stripped, emails folded, tags unique."""
    values = dict(data)
    if "name" in values:
        values["name"] = (values["name"] or "").strip()
        if not values["name"]:
            raise Invalid({"name": ["Must not be empty."]})
    for field in TEXT_FIELDS:
        if field in values and isinstance(values[field], str):
            values[field] = values[field].strip() or None
    if "email" in values:
        values["email"] = fold_email(values["email"])
    if "kind" in values and values["kind"] not in ORGANISATION_KINDS:
        raise Invalid({"kind": [f"Must be one of: {', '.join(ORGANISATION_KINDS)}."]})
    if "status" in values and values["status"] not in ORGANISATION_STATUSES:
        raise Invalid({"status": [f"Must be one of: {', '.join(ORGANISATION_STATUSES)}."]})
    if "tags" in values:
        values["tags"] = unique(tag.strip() for tag in values["tags"] or [])
    if values.get("notes") is None and "notes" in values:
        values["notes"] = ""
    return values


def apply(
    session: Session,
    org: Organisation,
    data: Mapping[str, Any],
    *,
    merged: Organisation | None = None,
) -> None:
    """Set the given fields (district by name, needs by key) and refresh the folded text.
    A retired district or need stays with an organisation that has it (or takes it from
    the ``merged`` one), but is not given anew. One that owns premises keeps a kind that
    may own them (see check_owner_kind)."""
    values = cleaned(data)
    if org.kind is not None and values.get("kind", org.kind) != org.kind:
        check_owner_kind(session, org, values["kind"])
    holders = [org] if merged is None else [org, merged]
    for field in FIELDS:
        if field in values:
            setattr(org, field, values[field])
    if "district" in values:
        org.district = district_by_name(
            session, values["district"], held={o.district_id for o in holders if o.district_id}
        )
    if "needs" in values:
        needs = needs_by_key(
            session, values["needs"] or [], held={need.key for o in holders for need in o.needs}
        )
        # In label order, as the relationship loads them, so that snapshots compare equal.
        org.needs = sorted(needs, key=lambda n: n.label)
    refresh_search(org)


def publish(session: Session, org: Organisation, verb: str) -> None:
    record_event(
        session,
        OutboxEvent,
        type=f"contacts.organisation.{verb}",
        aggregate_id=org.id,
        version=org.version,
        data=event_data(org),
    )


def add(session: Session, data: Mapping[str, Any], *, actor: str) -> Organisation:
    """Create an organisation in the caller's transaction (the import uses this too)."""
    values = dict(data)
    values.setdefault("kind", "business")
    values.setdefault("status", "prospect")
    org = Organisation(tags=[], notes="", version=1, archived=False)
    org.roles = []
    apply(session, org, values)
    session.add(org)
    session.flush()
    record_change(
        session,
        entity_type=ENTITY,
        entity_id=org.id,
        actor=actor,
        action="created",
        before=None,
        after=snapshot(org),
    )
    publish(session, org, "created")
    return org


def change(
    session: Session,
    org: Organisation,
    data: Mapping[str, Any],
    *,
    actor: str,
    merged: Organisation | None = None,
) -> bool:
    """Update in the caller's transaction; True if anything changed. ``merged``: the
    organisation merged into this one (see apply)."""
    before = snapshot(org)
    apply(session, org, data, merged=merged)
    return record_edit(session, org, before, actor=actor)


def record_edit(
    session: Session, org: Organisation, before: Mapping[str, Any], *, actor: str
) -> bool:
    """What changed since the ``before`` snapshot, as an edit: a new version, a history
    entry and an event, in the caller's transaction; True if anything changed."""
    new = record_update(session, org, before, snapshot(org), entity_type=ENTITY, actor=actor)
    if new is None:
        return False
    publish(session, org, "updated")
    return True


def create_organisation(session: Session, data: Mapping[str, Any], *, actor: str) -> Organisation:
    refuse_suppressed(session, data.get("email"))
    hold_district(session, data.get("district"))  # against a rename meanwhile
    org = add(session, data, actor=actor)
    session.commit()
    return org


def get_organisation(session: Session, organisation_id: uuid.UUID) -> Organisation:
    return get_or_404(session, Organisation, organisation_id, "organisation")


def lock_organisation(session: Session, organisation_id: uuid.UUID) -> Organisation:
    """The organisation, locked for a change until the commit and read afresh (or a 404)."""
    return lock_or_404(session, Organisation, organisation_id, "organisation")


def lock_organisations(
    session: Session, organisation_ids: Iterable[uuid.UUID], *, share: bool = False
) -> dict[uuid.UUID, Organisation]:
    """These organisations, locked in id order (see history.lock); missing ones left out."""
    return {org.id: org for org in lock(session, Organisation, set(organisation_ids), share=share)}


def owns_premises(session: Session, org: Organisation) -> bool:
    return bool(session.scalar(select(exists().where(Premises.owner_id == org.id))))


def check_owner_kind(session: Session, org: Organisation, kind: str) -> None:
    """Premises belong to landlords and housing companies: one that owns premises keeps
    such a kind (see premises.py)."""
    if kind not in OWNER_KINDS and owns_premises(session, org):
        raise Conflict(
            f"{org.name!r} owns premises, and premises belong to a landlord or a housing "
            f"company, so it cannot become a {kind}; give the premises another owner first.",
            code="owner_kind",
        )


def _check_version(org: Organisation, version: int | None) -> None:
    if version is not None and version != org.version:
        raise Conflict(
            "The organisation was changed meanwhile; reload it and apply your change again.",
            current_version=org.version,
        )


def update_organisation(
    session: Session,
    organisation_id: uuid.UUID,
    data: Mapping[str, Any],
    *,
    actor: str,
    version: int | None = None,
) -> Organisation:
    refuse_suppressed(session, data.get("email"))
    # Locked before the version is compared: a concurrent change waits for this one and
    # then compares against the version this one wrote. The district it is given first,
    # against a rename meanwhile.
    hold_district(session, data.get("district"))
    org = lock_organisation(session, organisation_id)
    _check_version(org, version)
    change(session, org, data, actor=actor)
    session.commit()
    return org


def set_archived(
    session: Session, organisation_id: uuid.UUID, archived: bool, *, actor: str
) -> Organisation:
    org = lock_organisation(session, organisation_id)
    archive_in_transaction(session, org, actor=actor, archived=archived)
    session.commit()
    return org


def archive_in_transaction(
    session: Session, org: Organisation, *, actor: str, archived: bool = True
) -> None:
    if archive(session, org, archived, entity_type=ENTITY, actor=actor):
        publish(session, org, "archived" if archived else "updated")


@dataclass(frozen=True)
class OrganisationFilter:
    kind: Sequence[str] = ()
    district: Sequence[str] = ()
    status: Sequence[str] = ()
    needs: Sequence[str] = ()
    tags: Sequence[str] = ()
    archived: bool | None = False
    sort: str = "name"


def named_filter(session: Session, criteria: OrganisationFilter) -> OrganisationFilter:
    """The filter with its districts and needs as a user typed them resolved to their names
    and keys (a 422 naming the filter for one that is none; see vocab)."""
    return replace(
        criteria,
        district=districts_named(session, criteria.district) if criteria.district else (),
        needs=needs_named(session, criteria.needs) if criteria.needs else (),
    )


def filtered(criteria: OrganisationFilter) -> Select[Any]:
    query = select(Organisation)
    if criteria.kind:
        query = query.where(Organisation.kind.in_(criteria.kind))
    if criteria.status:
        query = query.where(Organisation.status.in_(criteria.status))
    if criteria.district:
        query = query.where(
            Organisation.district_id.in_(
                select(District.id).where(District.name.in_(criteria.district))
            )
        )
    if criteria.needs:
        query = query.where(
            Organisation.id.in_(
                select(organisation_needs.c.organisation_id).where(
                    organisation_needs.c.need_key.in_(criteria.needs)
                )
            )
        )
    if criteria.tags:
        query = query.where(Organisation.tags.contains(list(criteria.tags)))
    if criteria.archived is not None:
        query = query.where(Organisation.archived.is_(criteria.archived))
    return query


def order(query: Select[Any], sort: str, columns: Mapping[str, Any], default: Any) -> Select[Any]:
    """Sorted by ``columns[sort]`` (a column, or a tuple of them), then ``default``."""
    descending = sort.startswith("-")
    keys = columns.get(sort.lstrip("-"))
    if keys is None:
        raise Invalid({"sort": [f"Sort by one of: {', '.join(columns)} (prefix - to reverse)."]})
    keys = keys if isinstance(keys, tuple) else (keys,)
    return query.order_by(*(key.desc() if descending else key.asc() for key in keys), default)


def paginate(
    session: Session, query: Select[Any], page: int, per_page: int
) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    items = list(
        session.scalars(query.limit(per_page).offset(page_offset(page, per_page))).unique()
    )
    return items, total


def list_organisations(
    session: Session, criteria: OrganisationFilter, *, page: int, per_page: int
) -> tuple[list[Organisation], int]:
    query = order(filtered(criteria), criteria.sort, SORTS, Organisation.id)
    return paginate(session, query, page, per_page)
