"""Exports: CSV of any filtered list (it reads back through the import) and vCard 4.0
(RFC 6350) for one record or a filtered set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import vobject
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..csvfiles import EXPORT_COLUMNS, write_csv
from ..models import Organisation, Person, Role
from . import organisations
from .organisations import SORTS, OrganisationFilter, filtered, order
from .people import get_person

ROLE_LABELS = {
    "owner": "Inhaber:in",
    "managing_director": "Geschäftsführung",
    "contact_person": "Ansprechpartner:in",
    "property_manager": "Hausverwaltung",
    "employee": "Mitarbeiter:in",
    "other": "Sonstiges",
}


def _organisations(session: Session, criteria: OrganisationFilter) -> list[Organisation]:
    query = order(filtered(criteria), criteria.sort, SORTS, Organisation.id)
    return list(session.scalars(query).unique())


def organisations_csv(session: Session, criteria: OrganisationFilter) -> str:
    rows = (
        {"id": org.id, **organisations.snapshot(org)} for org in _organisations(session, criteria)
    )
    return write_csv(EXPORT_COLUMNS, rows)


def _organisation_card(org: Organisation) -> vobject.base.Component:
    card = _card(org.id, "org", org.name, org.updated_at)
    card.add("org").value = [org.name]
    if org.street or org.city or org.postcode:
        adr = card.add("adr")
        adr.value = vobject.vcard.Address(
            street=" ".join(part for part in (org.street, org.house_number) if part),
            city=org.city or "",
            code=org.postcode or "",
            country="Deutschland",
        )
        adr.type_param = "work"
    _contact_lines(card, org.email, org.phone)
    if org.website:
        card.add("url").value = org.website
    if org.tags:
        card.add("categories").value = list(org.tags)
    if org.notes:
        card.add("note").value = org.notes
    if org.latitude is not None and org.longitude is not None:
        card.add("geo").value = f"geo:{org.latitude:.6f},{org.longitude:.6f}"
    return card


def _person_card(person: Person) -> vobject.base.Component:
    full_name = f"{person.first_name} {person.last_name}".strip()
    card = _card(person.id, "individual", full_name, person.updated_at)
    card.add("n").value = vobject.vcard.Name(family=person.last_name, given=person.first_name)
    if person.roles:
        first = person.roles[0]
        card.add("org").value = [first.organisation.name]
        card.add("title").value = ROLE_LABELS.get(first.role, first.role)
    _contact_lines(card, person.email, person.phone)
    if person.notes:
        card.add("note").value = person.notes
    return card


def _card(record_id: Any, kind: str, full_name: str, updated_at: Any) -> vobject.base.Component:
    card = vobject.vCard()
    card.add("version").value = "4.0"
    card.add("uid").value = f"urn:uuid:{record_id}"
    card.add("kind").value = kind
    card.add("fn").value = full_name
    card.add("rev").value = updated_at.strftime("%Y%m%dT%H%M%SZ")
    return card


def _contact_lines(card: vobject.base.Component, email: str | None, phone: str | None) -> None:
    if email:
        card.add("email").value = email
    if phone:
        tel = card.add("tel")
        tel.value = phone
        tel.type_param = "work"


def _serialize(cards: Iterable[vobject.base.Component]) -> str:
    return "".join(card.serialize() for card in cards)


def organisation_vcard(session: Session, organisation_id: Any) -> str:
    return _serialize(
        [_organisation_card(organisations.get_organisation(session, organisation_id))]
    )


def organisations_vcards(session: Session, criteria: OrganisationFilter) -> str:
    return _serialize(_organisation_card(org) for org in _organisations(session, criteria))


def person_vcard(session: Session, person_id: Any) -> str:
    return _serialize([_person_card(get_person(session, person_id))])


def people_vcards(session: Session, organisation_id: Any | None = None) -> str:
    query = select(Person).where(Person.archived.is_(False)).order_by(Person.last_name, Person.id)
    if organisation_id is not None:
        query = query.where(
            Person.id.in_(select(Role.person_id).where(Role.organisation_id == organisation_id))
        )
    return _serialize(_person_card(person) for person in session.scalars(query))
