"""Exports: CSV of any filtered list (it reads back through the import) and vCard 4.0
(RFC 6350) for one record or a filtered set."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import vobject
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..csvfiles import EXPORT_COLUMNS, write_csv
from ..models import Organisation, Person, Role
from ..websites import ascii_uri
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
        # A URI, not text (RFC 6350 6.7.8): its ";" and "," are not escaped, and it is ASCII:
        # an internationalised host in its IDNA form, umlauts elsewhere percent-encoded.
        url = card.add("url")
        url.value = ascii_uri(org.website)
        url.encoded = True
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
    # Each role an ORG with its TITLE, the pair grouped (RFC 6350 3.3); the first preferred.
    for number, role in enumerate(person.roles, 1):
        org = card.add("org", group=f"role{number}")
        org.value = [role.organisation.name]
        card.add("title", group=f"role{number}").value = ROLE_LABELS.get(role.role, role.role)
        if number == 1 and len(person.roles) > 1:
            org.pref_param = "1"
    _contact_lines(card, person.email, person.phone)
    if person.notes:
        card.add("note").value = person.notes
    return card


def _card(
    record_id: Any, kind: str, full_name: str, updated_at: datetime
) -> vobject.base.Component:
    card = vobject.vCard()
    card.add("version").value = "4.0"
    card.add("uid").value = f"urn:uuid:{record_id}"
    card.add("kind").value = kind
    card.add("fn").value = full_name
    # In UTC whatever the database session's time zone gave (the "Z").
    card.add("rev").value = updated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return card


def _contact_lines(card: vobject.base.Component, email: str | None, phone: str | None) -> None:
    if email:
        card.add("email").value = email
    if phone:
        tel = card.add("tel")
        tel.value = phone
        tel.type_param = "work"


# Lines are folded here, not by vobject: it counts characters where RFC 6350 3.2 counts
# octets, so lines of umlauts or dashes under 75 characters came out longer than 75 octets.
_LINE_OCTETS = 75
_UNFOLDED = 1 << 30
# No control character but the tab may stand in a value (RFC 6350 3.3, VALUE-CHAR); the
# line breaks inside text values are escaped (\n) before this.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _serialize(cards: Iterable[vobject.base.Component]) -> str:
    return "".join(
        _fold(_CONTROL.sub("", line)) + "\r\n"
        for card in cards
        for line in card.serialize(lineLength=_UNFOLDED).split("\r\n")[:-1]
    )


def _fold(line: str) -> str:
    """A content line in physical lines of at most 75 octets, each continuation starting
    with a space, no UTF-8 sequence split between two."""
    data = line.encode("utf-8")
    if len(data) <= _LINE_OCTETS:
        return line
    pieces: list[bytes] = []
    start, room = 0, _LINE_OCTETS
    while len(data) - start > room:
        end = start + room
        while data[end] & 0xC0 == 0x80:  # a continuation octet: cut before its character
            end -= 1
        pieces.append(data[start:end])
        start, room = end, _LINE_OCTETS - 1  # the leading space
    pieces.append(data[start:])
    return b"\r\n ".join(pieces).decode("utf-8")


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
