"""The maintained lists: districts and needs (Bedarfe)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from shared.db import get_or_not_found
from shared.errors import Conflict, Invalid
from shared.events import record_event

from ..models import NEED_KEY_LENGTH, District, Need, Organisation, OutboxEvent, Role
from ..normalise import fold_name, slug
from .history import diff, lock_or_404, record_change, unique_or_conflict

DISTRICT_EXISTS = "A district with this name exists already."
NEED_EXISTS = "A need with this key or label exists already."
NEED_LABEL_EXISTS = "A need with this label exists already."


def list_districts(session: Session, *, include_inactive: bool = True) -> list[District]:
    query = select(District).order_by(District.name)
    if not include_inactive:
        query = query.where(District.active.is_(True))
    return list(session.scalars(query))


def get_district(session: Session, district_id: int) -> District:
    return get_or_not_found(session, District, district_id, "No such district.")


def district_by_name(
    session: Session, name: str | None, field: str = "district", *, held: Collection[int] = ()
) -> District | None:
    """The district to give a record. A retired one only to a record that has it already
    (its id among ``held``): it is kept, but not given anew."""
    if name is None or not name.strip():
        return None
    district = session.scalar(select(District).where(District.name == name.strip()))
    if district is None:
        raise Invalid({field: [f"Unknown district {name!r}; see GET /api/v1/districts."]})
    if not district.active and district.id not in held:
        raise Invalid(
            {
                field: [
                    f"The district {district.name!r} is retired: kept where it is, not given anew."
                ]
            }
        )
    return district


def districts_named(session: Session, typed: Iterable[str], field: str = "district") -> list[str]:
    """The names of the districts a list filter names (see :func:`_named`)."""
    spellings = {name: [name] for name in session.scalars(select(District.name))}
    return _named(typed, spellings, field, "districts", "/api/v1/districts")


def needs_named(session: Session, typed: Iterable[str], field: str = "needs") -> list[str]:
    """The keys of the needs a list filter names, by key or label (see :func:`_named`)."""
    spellings = {need.key: [need.key, need.label] for need in session.scalars(select(Need))}
    return _named(typed, spellings, field, "needs", "/api/v1/needs")


def _named(
    typed: Iterable[str], spellings: Mapping[str, list[str]], field: str, what: str, path: str
) -> list[str]:
    """The entries (of ``spellings``: each entry's names) that the typed values name, as a
    user types them: a name exactly, else folded as the search folds it (case, accents,
    ß, spaces), so that ``gross klein`` is Groß Klein; every entry that folds alike, if
    none is named exactly. Retired ones too: they are kept by the records that have them.
    A value that names none is a 422 naming the filter."""
    exact: dict[str, set[str]] = {}
    folded: dict[str, set[str]] = {}
    for entry, names in spellings.items():
        for name in names:
            exact.setdefault(name, set()).add(entry)
            folded.setdefault(fold_name(name), set()).add(entry)
    found: dict[str, None] = {}
    unknown = []
    for value in typed:
        entries = exact.get(value.strip()) or folded.get(fold_name(value))
        if entries:
            found.update(dict.fromkeys(sorted(entries)))
        else:
            unknown.append(value)
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise Invalid({field: [f"Unknown {what}: {listed}; see GET {path}."]})
    return list(found)


def create_district(session: Session, *, name: str, actor: str) -> District:
    name = name.strip()
    if not name:
        raise Invalid({"name": ["Must not be empty."]})
    if session.scalar(select(District.id).where(District.name == name)) is not None:
        raise Conflict(DISTRICT_EXISTS)
    district = District(name=name, active=True)
    with unique_or_conflict(session, DISTRICT_EXISTS):
        session.add(district)
    record_change(
        session,
        entity_type="district",
        entity_id=district.id,
        actor=actor,
        action="created",
        before=None,
        after={"name": name, "active": True},
    )
    session.commit()
    return district


def update_district(
    session: Session,
    district_id: int,
    *,
    actor: str,
    name: str | None = None,
    active: bool | None = None,
) -> District:
    district = lock_or_404(session, District, district_id, "district")
    before = {"name": district.name, "active": district.active}
    if name is not None and name.strip() != district.name:
        name = name.strip()
        if not name:
            raise Invalid({"name": ["Must not be empty."]})
        clash = session.scalar(
            select(District.id).where(District.name == name, District.id != district_id)
        )
        if clash is not None:
            raise Conflict(DISTRICT_EXISTS)
        with unique_or_conflict(session, DISTRICT_EXISTS):
            _rename(session, district, name, actor=actor)
    if active is not None:
        district.active = active
    old, new = diff(before, {"name": district.name, "active": district.active})
    if new:
        record_change(
            session,
            entity_type="district",
            entity_id=district.id,
            actor=actor,
            action="updated",
            before=old,
            after=new,
        )
    session.commit()
    return district


def _rename(session: Session, district: District, name: str, *, actor: str) -> None:
    """A rename is an edit of each of the district's organisations (archived ones too):
    their search text, version, history and event carry the new name.

    The district is locked already (by update_district), before the organisations are
    read: a write that gives an organisation a district holds that district first (see
    hold_district), so it has committed by now and its organisation is among them, or it
    waits and then reads the new name. A merge gives the survivor the district of the
    organisation it absorbs, which it holds locked instead: once the organisations read
    here are locked, such a merge has committed, so they are read again until none is new
    (and a survivor is not left with the old name in its search text)."""
    from . import organisations  # imported here: it imports this module's lookups

    locked: dict[uuid.UUID, Organisation] = {}
    while fresh := set(_having(session, district)) - locked.keys():
        locked.update(organisations.lock_organisations(session, fresh))
    orgs = session.scalars(
        select(Organisation)
        .where(Organisation.id.in_(locked), Organisation.district_id == district.id)
        .options(selectinload(Organisation.roles).selectinload(Role.person))
        .order_by(Organisation.id)
    ).all()
    before = [organisations.snapshot(org) for org in orgs]
    district.name = name
    for org, snapshot in zip(orgs, before, strict=True):
        organisations.refresh_search(org)
        organisations.record_edit(session, org, snapshot, actor=actor)


def _having(session: Session, district: District) -> Iterable[uuid.UUID]:
    return session.scalars(select(Organisation.id).where(Organisation.district_id == district.id))


def hold_district(session: Session, name: str | None) -> None:
    """Lock the district of this name (if there is one) FOR SHARE until the commit, before
    an organisation is given it and before any organisation is locked (districts come
    first, see history.lock). A rename locks the district for an update and only then
    reads which organisations have it: so it waits until this write has committed and
    then sees its organisation, or this write waits for the rename and reads the new name.
    Either way the organisation's search text carries the name the district has. Writes
    that give the same district share the lock and do not wait for each other."""
    if name is not None and name.strip():
        hold_districts(session, [name.strip()])


def hold_districts(session: Session, names: Collection[str] | Select[Any]) -> None:
    """Lock the districts of these names (a query of them, for many), as
    :func:`hold_district`; read afresh: what the session held of them is replaced."""
    session.execute(
        select(District)
        .where(District.name.in_(names))
        .order_by(District.id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )


def need_data(need: Need) -> dict[str, Any]:
    return {"key": need.key, "label": need.label, "active": need.active}


def list_needs(session: Session) -> list[Need]:
    return list(session.scalars(select(Need).order_by(Need.label)))


def get_need(session: Session, key: str) -> Need:
    return get_or_not_found(session, Need, key, "No such need.")


def needs_by_key(
    session: Session, keys: Iterable[str], field: str = "needs", *, held: Collection[str] = ()
) -> list[Need]:
    """The needs to give a record; retired ones only if the record has them already (their
    keys among ``held``), as with districts."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return []
    found = {need.key: need for need in session.scalars(select(Need).where(Need.key.in_(wanted)))}
    unknown = [key for key in wanted if key not in found]
    if unknown:
        raise Invalid({field: [f"Unknown needs: {', '.join(unknown)}; see GET /api/v1/needs."]})
    retired = [key for key in wanted if not found[key].active and key not in held]
    if retired:
        raise Invalid(
            {
                field: [
                    f"Retired needs are kept where they are, not given anew: {', '.join(retired)}."
                ]
            }
        )
    return [found[key] for key in wanted]


def _publish_need(session: Session, need: Need, verb: str) -> None:
    record_event(
        session,
        OutboxEvent,
        type=f"contacts.need.{verb}",
        aggregate_id=need.key,
        version=need.version,
        data=need_data(need),
    )


def create_need(session: Session, *, label: str, actor: str, key: str | None = None) -> Need:
    label = label.strip()
    if not label:
        raise Invalid({"label": ["Must not be empty."]})
    field = "key" if key else "label"
    key = slug(key or label)[:NEED_KEY_LENGTH].rstrip("-")
    if not key:
        raise Invalid({field: ["Must contain letters or digits."]})
    if session.scalar(select(Need.key).where((Need.key == key) | (Need.label == label))):
        raise Conflict(NEED_EXISTS)
    need = Need(key=key, label=label, active=True, version=1)
    with unique_or_conflict(session, NEED_EXISTS):
        session.add(need)
    record_change(
        session,
        entity_type="need",
        entity_id=key,
        actor=actor,
        action="created",
        before=None,
        after=need_data(need),
    )
    _publish_need(session, need, "created")
    session.commit()
    return need


def update_need(
    session: Session, key: str, *, actor: str, label: str | None = None, active: bool | None = None
) -> Need:
    # Locked, so that two changes at once get versions one after the other.
    need = lock_or_404(session, Need, key, "need")
    before = need_data(need)
    if label is not None:
        label = label.strip()
        if not label:
            raise Invalid({"label": ["Must not be empty."]})
        if session.scalar(select(Need.key).where(Need.label == label, Need.key != key)):
            raise Conflict(NEED_LABEL_EXISTS)
        with unique_or_conflict(session, NEED_LABEL_EXISTS):
            need.label = label
    if active is not None:
        need.active = active
    old, new = diff(before, need_data(need))
    if new:
        need.version += 1
        record_change(
            session,
            entity_type="need",
            entity_id=key,
            actor=actor,
            action="updated",
            before=old,
            after=new,
        )
        _publish_need(session, need, "updated")
    session.commit()
    return need
