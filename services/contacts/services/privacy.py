"""Data subjects' rights in the register: access and portability (Art. 15 and 20 GDPR) and
erasure (Art. 17 GDPR), by email address.

An erasure deletes the people with the address (and their roles), empties what the history
and the outbox hold of them, clears the address where an organisation gives it, deletes the
uploads that still hold it, and stores a suppression so that it is not imported or entered
again. A ``contacts.person.erased`` event per person (the id and the SHA-256 of the
address, never the address) says which people went; one ``contacts.address.erased`` event
per erasure (the SHA-256 only), also when the register held no one with the address, lets
visits and newsletter erase what they hold under the address: they hold it without a
person of the register (a subscriber, a sign-up), so a person's id would not find it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.erasure import ADDRESS_ERASED
from shared.events import record_event

from ..models import Change, Import, Organisation, OutboxEvent, Person, Premises, Suppression
from ..normalise import composed, whole_address, whole_words
from . import imports, organisations, people, premises, suppressions
from .history import history, record_change

# What stands where personal data was: an entry of the history, or an address in one.
ERASED = {"erased": True}
ERASED_EVENT = "contacts.person.erased"


@dataclass(frozen=True)
class PersonData:
    person: Person
    history: list[Change]


@dataclass(frozen=True)
class Mention:
    """A record whose notes mention the address, or a person of it by their full name: free
    text, which no erasure edits by itself (a name may be someone else's too), for an admin
    to read."""

    entity: str
    id: uuid.UUID
    label: str
    notes: str


@dataclass(frozen=True)
class DataExport:
    """What the register holds about an address (see :func:`export`)."""

    email: str
    email_sha256: str
    generated_at: datetime
    people: list[PersonData]
    organisations: list[Organisation]
    imports: list[Row[Any]]
    mentions: list[Mention]
    suppression: Suppression | None


@dataclass(frozen=True)
class Erasure:
    """What an erasure did, in numbers (no personal data)."""

    email_sha256: str
    suppressed_at: datetime
    people: int
    roles: int
    organisations: int
    imports: int
    history_entries: int
    events: int
    notes_to_review: list[Mention]


def export(session: Session, email: str) -> DataExport:
    """Everything the register holds about ``email``: the people with it (their fields,
    roles and history), the organisations that give it as their own, the uploads that hold
    it, and whether it is suppressed. Nothing held is an answer too (empty lists)."""
    address, digest = suppressions.address_of(email)
    found = session.scalars(
        select(Person).where(Person.email == address).order_by(Person.created_at, Person.id)
    ).all()
    return DataExport(
        email=address,
        email_sha256=digest,
        generated_at=utcnow(),
        people=[PersonData(p, history(session, people.ENTITY, p.id)) for p in found],
        organisations=list(
            session.scalars(
                select(Organisation)
                .where(Organisation.email == address)
                .order_by(Organisation.created_at, Organisation.id)
            )
        ),
        imports=list(
            session.execute(
                select(Import.id, Import.filename, Import.status, Import.created_at)
                .where(Import.id.in_(imports.holding(session, address)))
                .order_by(Import.created_at, Import.id)
            )
        ),
        mentions=mentions(session, address, _full_names(found), besides=[p.id for p in found]),
        suppression=suppressions.find(session, digest),
    )


def erase(session: Session, email: str, *, actor: str) -> Erasure:
    """Erase ``email`` from the register in one transaction, and suppress it (also when
    the register holds nothing of it: the person asked not to be processed).

    Locks, in the order the other writers take them: the uploads that hold the address
    (a worker at one of them finishes first), the address (a person or organisation given
    it meanwhile is created before, or refused after), the imports' turn (an import
    committed meanwhile is written before, or refuses the address after), then the
    organisations and the people."""
    address, digest = suppressions.address_of(email)
    uploads = imports.erase_uploads(session, imports.holding(session, address))
    suppressions.lock_address(session, digest)
    imports.take_turn(session)
    person_ids = set(session.scalars(select(Person.id).where(Person.email == address)))
    org_ids = set(session.scalars(select(Organisation.id).where(Organisation.email == address)))
    orgs, locked = people.lock_with_organisations(session, person_ids, org_ids)
    erased = [person for person in locked if person.email == address]
    roles = sum(len(person.roles) for person in erased)
    to_review = mentions(
        session, address, _full_names(erased), besides=[person.id for person in erased]
    )
    entries, events = _forget_people(session, erased)
    for person in erased:
        _record_erasure(session, person, digest, actor)
        session.delete(person)  # with the roles
    people.refresh_organisations(
        session, {role.organisation for person in erased for role in person.roles}
    )
    cleared = [org for org in orgs.values() if org.email == address]
    for org in cleared:
        organisations.change(session, org, {"email": None}, actor=actor)
    session.flush()
    scrubbed_entries, scrubbed_events = _forget_address(session, address)
    suppression = suppressions.suppress(session, digest, actor=actor)
    _publish_address_erasure(session, digest)
    session.commit()
    return Erasure(
        email_sha256=digest,
        suppressed_at=suppression.created_at,
        people=len(erased),
        roles=roles,
        organisations=len(cleared),
        imports=uploads,
        history_entries=entries + scrubbed_entries,
        events=events + scrubbed_events,
        notes_to_review=to_review,
    )


# The records with notes, and what names one in a list of them.
_NOTED: tuple[tuple[str, Any, Any], ...] = (
    (organisations.ENTITY, Organisation, Organisation.name),
    (people.ENTITY, Person, func.concat_ws(" ", Person.first_name, Person.last_name)),
    (premises.ENTITY, Premises, func.concat_ws(" ", Premises.street, Premises.house_number)),
)


def mentions(
    session: Session, address: str, names: Iterable[str], *, besides: Collection[uuid.UUID] = ()
) -> list[Mention]:
    """The records (other than ``besides``) whose notes hold ``address`` as a whole address
    or one of ``names`` as whole words, in any case and composition (a whole read of the
    tables: requests about a person are rare). The database finds the notes that contain
    one of them; of those, the ones where it stands inside a longer address or word
    (``hanna@…``, ``Johanna Altmann``) are left out."""
    names = [composed(name) for name in names]
    patterns = [whole_address(address), *map(whole_words, names)]
    folded = sorted({needle.lower() for needle in (address, *names)})
    found: list[Mention] = []
    for entity, model, label in _NOTED:
        notes = func.lower(func.normalize(model.notes, literal_column("NFC")))
        rows = session.execute(
            select(model.id, label, model.notes)
            .where(or_(*(func.strpos(notes, needle) > 0 for needle in folded)))
            .where(model.id.not_in(list(besides)))
            .order_by(model.id)
        )
        found += [
            Mention(entity, id_, name, text_)
            for id_, name, text_ in rows
            if any(pattern.search(composed(text_)) for pattern in patterns)
        ]
    return found


def _full_names(found: Iterable[Person]) -> list[str]:
    """The full names of these people, for finding them in notes; a person with only a
    first or a last name is left out (``Müller`` alone names many)."""
    return [f"{p.first_name} {p.last_name}" for p in found if p.first_name and p.last_name]


# A person's history entries keep who did what and when; what they held of the person
# (the snapshots before and after) is replaced by the marker. Their events keep the id.
_FORGET_HISTORY = """
UPDATE changes SET
    before = CASE WHEN jsonb_typeof(before) = 'object' THEN CAST(:erased AS jsonb) ELSE before END,
    after = CASE WHEN jsonb_typeof(after) = 'object' THEN CAST(:erased AS jsonb) ELSE after END
WHERE entity_type = :entity AND entity_id = ANY(CAST(:ids AS text[]))
"""
_FORGET_EVENTS = """
UPDATE outbox SET payload = jsonb_build_object('id', aggregate_id) || CAST(:erased AS jsonb)
WHERE type LIKE 'contacts.person.%' AND aggregate_id = ANY(CAST(:ids AS text[]))
"""
# The address wherever a snapshot or an event names it as an email: an organisation that
# gave it, a person who had it before. In the history the marker stands for it; in an event
# it is null, as a consumer reads an email there.
_FORGET_ADDRESS_HISTORY = """
UPDATE changes SET
    before = CASE WHEN before->>'email' = :address
        THEN jsonb_set(before, '{email}', CAST(:erased AS jsonb)) ELSE before END,
    after = CASE WHEN after->>'email' = :address
        THEN jsonb_set(after, '{email}', CAST(:erased AS jsonb)) ELSE after END
WHERE before->>'email' = :address OR after->>'email' = :address
"""
_FORGET_ADDRESS_EVENTS = """
UPDATE outbox SET payload = jsonb_set(payload, '{email}', 'null')
WHERE payload->>'email' = :address
"""


def _forget_people(session: Session, erased: list[Person]) -> tuple[int, int]:
    """Empty the history entries and events of these people; (entries, events)."""
    if not erased:
        return 0, 0
    params = {
        "ids": [str(person.id) for person in erased],
        "entity": people.ENTITY,
        "erased": json.dumps(ERASED),
    }
    return _rowcount(session, _FORGET_HISTORY, params), _rowcount(session, _FORGET_EVENTS, params)


def _forget_address(session: Session, address: str) -> tuple[int, int]:
    """Take the address out of every history entry and event that still names it (a whole
    read of both tables: erasures are rare); (entries, events)."""
    params = {"address": address, "erased": json.dumps(ERASED)}
    return (
        _rowcount(session, _FORGET_ADDRESS_HISTORY, params),
        _rowcount(session, _FORGET_ADDRESS_EVENTS, params),
    )


def _record_erasure(session: Session, person: Person, digest: str, actor: str) -> None:
    """The person's last history entry (who erased them, and when) and event, for the
    services that hold something of them: the id and the address's hash, never the
    address."""
    record_change(
        session,
        entity_type=people.ENTITY,
        entity_id=person.id,
        actor=actor,
        action="erased",
        before=None,
        after=ERASED,
    )
    record_event(
        session,
        OutboxEvent,
        type=ERASED_EVENT,
        aggregate_id=person.id,
        version=person.version + 1,
        data={"id": str(person.id), "email_sha256": digest},
    )


def _publish_address_erasure(session: Session, digest: str) -> None:
    """The event for the services that hold the address without a person of the register.
    Its aggregate is the hash; erasing the address again (a subscriber added meanwhile
    elsewhere) is the next version, the erasure lock keeping the count."""
    earlier = session.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.type == ADDRESS_ERASED, OutboxEvent.aggregate_id == digest)
    )
    record_event(
        session,
        OutboxEvent,
        type=ADDRESS_ERASED,
        aggregate_id=digest,
        version=(earlier or 0) + 1,
        data={"email_sha256": digest},
    )


def _rowcount(session: Session, statement: str, params: dict[str, Any]) -> int:
    return int(session.execute(text(statement), params).rowcount)  # type: ignore[attr-defined]
