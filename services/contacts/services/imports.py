"""CSV import: preview (a dry run with per-row errors), then commit all-or-nothing or only
the valid rows, in one transaction; large files run in a worker and report progress.

The preview checks and folds every row once and keeps the valid ones in ``import_rows``
(written with COPY). The commit writes them with set-based SQL: which rows match existing
organisations or repeat an earlier row, then the new organisations, their needs, their
history and their events, each one ``INSERT ... SELECT``. Rows that match an organisation
(updated where different) and rows naming a person go through the same use cases as
single edits.

Re-importing a file creates no duplicates: a row matches an organisation by id (our own
export), by email, or by folded name and address. A row's person is one of the register,
or of an earlier row, when they are there already, or by their email at another
organisation (see _plan_people); the preview plans the people as the commit does.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

import marshmallow as ma
from psycopg import sql
from sqlalchemy import (
    Boolean,
    Integer,
    Uuid,
    and_,
    column,
    delete,
    func,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.errors import Conflict, Invalid
from shared.events import events_written

from ..csvfiles import (
    EXPORT_COLUMNS,
    Table,
    column_mapping,
    decode,
    raw_row,
    read_table,
    row_values,
    write_csv,
)
from ..models import OWNER_KINDS, District, Import, ImportRow, Need, Person
from ..normalise import (
    composed,
    fold_name,
    match_address,
    match_name,
    match_person_name,
    match_phone,
    slug,
    strip_accents,
    whole_address,
)
from . import organisations, people
from .history import get_or_404, lock_or_404
from .suppressions import IMPORT_REFUSAL, SQL_SUPPRESSED
from .vocab import hold_districts

MODES = ("all_or_nothing", "valid_only")
# An upload holds personal data (people's names, addresses, emails): an import, with its
# file, its checked rows and its error report, is deleted this long after the upload
# (storage limitation, Art. 5(1)(e) GDPR). The register keeps what was imported.
RETENTION_DAYS = 30
# Files with more rows than this are checked and committed by a worker (see tasks.py).
BACKGROUND_ROWS = 2000
PROGRESS_EVERY = 500
# How often a commit plans and locks the rows' people (see _plan_and_lock_people).
LOCK_ATTEMPTS = 3
WORK_MEM = "256MB"
# What a row without a kind creates; a row matching an organisation leaves its kind alone.
DEFAULT_KIND = "business"
# What the office's own spreadsheets say for a kind or a status (folded; see
# docs/glossary.md), beside the keys our export writes.
KIND_WORDS = {
    "gewerbe": "business",
    "gewerbetreibende": "business",
    "betrieb": "business",
    "unternehmen": "business",
    "vermieter": "landlord",
    "vermieterin": "landlord",
    "eigentumer": "landlord",
    "eigentumerin": "landlord",
    "wohnungsunternehmen": "housing_company",
    "wohnungsgesellschaft": "housing_company",
    "wohnungsgenossenschaft": "housing_company",
    "partnerin": "partner",
    "sonstige": "other",
    "sonstiges": "other",
}
STATUS_WORDS = {
    "interessent": "prospect",
    "interessentin": "prospect",
    "potenziell": "prospect",
    "aktiv": "active",
    "geschlossen": "closed",
    "aufgegeben": "closed",
    "weggezogen": "moved_away",
    "verzogen": "moved_away",
}
# Statuses of an import that a worker is still at; progress is written only to these.
UNFINISHED = ("checking", "queued", "running")

PERSON_FIELDS = ("first_name", "last_name", "person_phone", "job_title")
PERSON_LIMITS = {"first_name": 120, "last_name": 120, "person_phone": 60, "job_title": 200}
# An organisation's fields as a row gives them (NULL in import_rows: not in the row).
VALUE_COLUMNS = EXPORT_COLUMNS[1:]  # all but the id
STAGED_COLUMNS = (
    "import_id",
    "line",
    "record_id",
    *VALUE_COLUMNS,
    *PERSON_FIELDS,
    "search_text",
    "search_vector",
    "name_vector",
    "match_name",
    "match_address",
    "match_phone",
)

Progress = Callable[[int], None]


def _row_schema(mapping: Mapping[str, str]) -> ma.Schema:
    """The organisation schema, limited to the fields the file has (much faster per row)."""
    from ..schemas import OrganisationInSchema

    fields = set(OrganisationInSchema().fields)
    wanted = set(mapping.values()) | {"kind", "name", "house_number"}  # split off the street
    return OrganisationInSchema(only=wanted & fields)


class _Vocabulary:
    """Districts and needs as a file may name them: exactly, else folded (case, umlauts,
    ß); where two entries fold alike, an exact spelling wins, then an active entry."""

    def __init__(self, session: Session) -> None:
        districts = session.scalars(select(District).order_by(District.active.desc(), District.id))
        needs = session.scalars(select(Need).order_by(Need.active.desc(), Need.label)).all()
        self.districts: dict[str, str] = {}
        for district in districts:
            self.districts[district.name] = district.name
        for name in list(self.districts):
            self.districts.setdefault(fold_name(name), name)
        self.labels = {need.key: need.label for need in needs}
        self.needs: dict[str, str] = {}
        for need in needs:
            self.needs[need.key] = need.key
            self.needs.setdefault(need.label, need.key)
        for need in needs:
            self.needs.setdefault(fold_name(need.label), need.key)
            self.needs.setdefault(slug(need.label), need.key)

    def resolve(self, values: dict[str, Any], errors: dict[str, list[str]]) -> None:
        if "district" in values:
            given = values["district"]
            name = self.districts.get(given) or self.districts.get(fold_name(given))
            if name is None:
                errors["district"] = [f"Unknown district {values['district']!r}."]
            values["district"] = name
        if "needs" in values:
            keys = [self.needs.get(n) or self.needs.get(fold_name(n)) for n in values["needs"]]
            unknown = [n for n, key in zip(values["needs"], keys, strict=True) if key is None]
            if unknown:
                errors["needs"] = [f"Unknown needs: {', '.join(unknown)}."]
            # Unique and in label order, as an organisation lists them.
            found = {key for key in keys if key}
            values["needs"] = sorted(found, key=self.labels.__getitem__)


class _Loader:
    """The row schema's fields applied one by one: the checks, results and messages of
    ``schema.load`` (no schema-level hooks here), but a value met before in the file is not
    checked again: streets, postcodes, sectors and districts repeat in every register."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.fields: dict[str, ma.fields.Field[Any]] = dict(_row_schema(mapping).fields)
        self.known: dict[str, dict[Any, tuple[bool, Any]]] = {name: {} for name in self.fields}

    def load(self, values: Mapping[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
        loaded: dict[str, Any] = {}
        for name, field in self.fields.items():
            value = values.get(name, ma.missing)
            if value is ma.missing:
                if field.required:
                    errors[name] = [field.error_messages["required"]]
                continue
            known = self.known[name]
            key = tuple(value) if isinstance(value, list) else value
            found = known.get(key)
            if found is None:
                try:
                    found = (True, field.deserialize(value))
                except ma.ValidationError as exc:
                    found = (False, exc.messages)
                known[key] = found
            if found[0]:
                result = found[1]
                loaded[name] = list(result) if isinstance(result, list) else result
            else:
                errors[name] = found[1]
        if not values.keys() <= self.fields.keys():
            for name in values.keys() - self.fields.keys():
                errors[name] = ["Unknown field."]
        return loaded


def _staged(
    import_id: uuid.UUID,
    line: int,
    record_id: str | None,
    values: Mapping[str, Any],
    person: Mapping[str, str],
) -> tuple[Any, ...]:
    """A valid row as a row of import_rows: its fields (NULL: not in the row), its person,
    and its folded text as a new organisation would have it (see organisations.snapshot
    and search_fields). An id that is not one of ours (another system's customer number)
    matches nothing: the row is matched by email, or by name and address."""
    try:
        parsed_id = uuid.UUID(record_id) if record_id else None
    except ValueError:
        parsed_id = None
    name = values["name"]
    street = values.get("street")
    names = [f"{person.get('first_name', '')} {person.get('last_name', '')}"] if person else []
    search_text, vector, name_vector = organisations.search_fields(
        name,
        values.get("legal_form"),
        street,
        values.get("sector"),
        values.get("city"),
        values.get("district"),
        values.get("tags"),
        names,
    )
    return (
        import_id,
        line,
        parsed_id,
        *(values.get(column) for column in VALUE_COLUMNS),
        *(person.get(key) for key in PERSON_FIELDS),
        search_text,
        vector,
        name_vector,
        match_name(name),
        match_address(street, values.get("house_number")),
        match_phone(values.get("phone")),
    )


def _stage(
    session: Session,
    import_id: uuid.UUID,
    table: Table,
    mapping: Mapping[str, str],
    progress: Progress | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Check every row once; the valid ones go to import_rows with COPY. Returns how many
    were valid, and the errors of the others (in line order)."""
    valid, errors = _copy_rows(session, import_id, table, mapping, progress)
    refused = _refuse(session, import_id, table)
    if refused:
        errors = sorted([*errors, *refused], key=lambda error: int(error["line"]))
    return valid - len(refused), errors


def _copy_rows(
    session: Session,
    import_id: uuid.UUID,
    table: Table,
    mapping: Mapping[str, str],
    progress: Progress | None,
) -> tuple[int, list[dict[str, Any]]]:
    loader = _Loader(mapping)
    vocabulary = _Vocabulary(session)
    person_phone = _person_phone_field()
    errors_found: list[dict[str, Any]] = []
    valid = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(ImportRow.__tablename__),
        sql.SQL(", ").join(map(sql.Identifier, STAGED_COLUMNS)),
    )
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for done, (line, cells) in enumerate(table.rows):
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done)
            values = row_values(table.headers, cells, mapping)
            person: dict[str, str] = {
                key: values.pop(key) for key in PERSON_FIELDS if key in values
            }
            if "name" not in values and (person.get("first_name") or person.get("last_name")):
                first, last = person.get("first_name", ""), person.get("last_name", "")
                values["name"] = f"{first} {last}".strip()
            kind_given = "kind" in values
            for field, words in (("kind", KIND_WORDS), ("status", STATUS_WORDS)):
                if field in values:
                    values[field] = words.get(fold_name(values[field]), values[field])
            values.setdefault("kind", DEFAULT_KIND)  # checked as a new organisation's
            record_id = values.pop("id", None)
            errors: dict[str, Any] = {
                key: [f"Longer than {limit} characters."]
                for key, limit in PERSON_LIMITS.items()
                if len(person.get(key, "")) > limit
            }
            if len(cells) > len(table.headers) and any(
                c.strip() for c in cells[len(table.headers) :]
            ):
                errors["row"] = [
                    f"{len(cells)} cells in a file of {len(table.headers)} columns; "
                    "is a delimiter in a value without quotes?"
                ]
            if "person_phone" in person:
                _check_field(person_phone, person["person_phone"], "person_phone", errors)
            for number in ("latitude", "longitude"):
                if number in values:
                    values[number] = values[number].replace(",", ".")
            vocabulary.resolve(values, errors)
            loaded = loader.load(values, errors)
            if not errors:
                loaded = _normalised(loaded, errors)
            if errors:
                errors_found.append(
                    {"line": line, "errors": errors, "values": raw_row(table.headers, cells)}
                )
                continue
            if not kind_given:
                del loaded["kind"]
            copy.write_row(_staged(import_id, line, record_id, loaded, person))
            valid += 1
    return valid, errors_found


def _person_phone_field() -> ma.fields.Field[Any]:
    from ..schemas import PersonInSchema

    return PersonInSchema().fields["phone"]


def _check_field(
    field: ma.fields.Field[Any], value: Any, name: str, errors: dict[str, Any]
) -> None:
    try:
        field.deserialize(value)
    except ma.ValidationError as exc:
        errors[name] = exc.messages


def _normalised(values: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    """The row's fields as a single create stores them (emails folded, tags unique)."""
    try:
        return organisations.cleaned(values)
    except Invalid as exc:
        errors.update(exc.extensions.get("errors", {}))
        return values


def _refuse(session: Session, import_id: uuid.UUID, table: Table) -> list[dict[str, Any]]:
    """The staged rows a single edit would refuse (see _REFUSED), taken out of import_rows;
    their errors. A refused row leaves the plan of the others (a row it repeated may change
    an organisation now), so they are checked again, until no more is refused. A file none
    of whose rows may be refused (most files) is not planned for it (_MAY_BE_REFUSED)."""
    found: dict[int, dict[str, list[str]]] = {}
    params = {"import_id": import_id, "owner_kinds": list(OWNER_KINDS)}
    while session.scalar(text(_MAY_BE_REFUSED), params):
        refused: dict[int, dict[str, list[str]]] = {}
        for line, field, name in session.execute(text(_REFUSED), params):
            message = _REFUSALS[field].format(name=name)
            refused.setdefault(line, {}).setdefault(field, []).append(message)
        if not refused:
            break
        session.execute(
            delete(ImportRow)
            .where(ImportRow.import_id == import_id, ImportRow.line.in_(refused))
            .execution_options(synchronize_session=False)
        )
        found.update(refused)
    cells = dict(table.rows)
    return [
        {"line": line, "errors": errors, "values": raw_row(table.headers, cells[line])}
        for line, errors in sorted(found.items())
    ]


# For each staged row: the live organisation it matches (by id, by email, by folded name
# and address), and whether it repeats an earlier row of the file (same key, or the email
# of an earlier row without a person: a contact's email is not their company's). Of
# organisations sharing an email (a mailbox a person and a company share), the one of the
# row's name, else of its address.
# A row naming a person carries the person's email (a file of contacts): it finds the
# organisation by its name and address first, by that email only when nothing else does
# and the organisation has the row's name (a company that moved): the organisation another
# row created with that person's email is not the person's next company, not even one in
# the same building (see _plan_people).
_BY_EMAIL = """(SELECT o.id FROM organisations o
     WHERE o.email = s.email AND o.archived IS false {also}
     ORDER BY (o.match_name = s.match_name) IS TRUE DESC,
        (o.match_address = s.match_address) IS TRUE DESC, o.created_at, o.id
     LIMIT 1)"""
_NAMES_A_PERSON = "(s.first_name IS NOT NULL OR s.last_name IS NOT NULL)"
_SAME_NAME = "AND o.match_name = s.match_name"
_MATCH = f"""
COALESCE(
    (SELECT o.id FROM organisations o
     WHERE o.id = s.record_id AND o.archived IS false),
    CASE WHEN NOT {_NAMES_A_PERSON} THEN {_BY_EMAIL.format(also="")} END,
    (SELECT o.id FROM organisations o
     WHERE o.match_name = s.match_name AND o.match_address = s.match_address
       AND o.archived IS false ORDER BY o.created_at, o.id LIMIT 1),
    CASE WHEN {_NAMES_A_PERSON} THEN {_BY_EMAIL.format(also=_SAME_NAME)} END
)
"""  # noqa: S608 (built from constants)
# Whether any staged row may be refused (see _REFUSED), without planning the file: most
# files name no retired entry and no erased address, and give no kind an owner of premises
# could be refused.
_MAY_BE_REFUSED = f"""
SELECT EXISTS (
    SELECT 1 FROM import_rows s
    WHERE s.import_id = :import_id AND (
        EXISTS (SELECT 1 FROM districts d WHERE d.name = s.district AND NOT d.active)
        OR EXISTS (SELECT 1 FROM needs n WHERE n.key = ANY(s.needs) AND NOT n.active)
        OR (s.kind IS NOT NULL AND NOT s.kind = ANY(CAST(:owner_kinds AS text[]))
            AND EXISTS (SELECT 1 FROM premises))
        OR (s.email IS NOT NULL AND {SQL_SUPPRESSED})
    )
)
"""  # noqa: S608 (built from constants)
_RETIRED = "{name!r} is retired: kept where it is, not given anew."
_REFUSALS = {
    "district": _RETIRED,
    "needs": _RETIRED,
    "kind": "{name!r} owns premises, and premises belong to a landlord or a housing company.",
    "email": IMPORT_REFUSAL,
}


# A row repeating an earlier one changes nothing, also when it matches an organisation
# itself: the first import of a file wrote the earlier row's values only (the repeat
# matched nothing then), and the file imported again would otherwise write the repeat's
# over them (a second company with the mailbox of the first renamed it). Its person joins
# the earlier row's organisation (see _PERSON_ROWS). A row matched by its id (our export)
# is no repeat: it is the organisation of that id, also when another row shares its name
# and address or its email.
# Of the other rows matching one organisation (a contact's row by its name and address, a
# company's by the mailbox they share), the first changes it and the later ones repeat it:
# each writing its own values, the file would change the organisation on every import (and
# the commit would change it more often than the preview said). A later row repeats the
# first only where it would still find the organisation once the first has changed it (by
# the email, or the name and address, the first leaves it with; a row naming a person
# writes no email): otherwise (left_behind) the file imported again would not find it
# there, and would create it then. It is another organisation of the file (the company
# named at its old address with a mailbox of its own, where the first row moves it),
# created now. Where the first row gives a street or a house number but not both, the
# address it leaves is not known here, and the later row repeats it. The mirror of it: a
# row matching nothing that would find an organisation once an earlier row has changed it
# (picked_up: a contact's row at the address of a company the row before renamed to the
# contact's company) repeats that row, and its person joins the organisation: created, it
# would be a second one of that name and address, and the file imported again would find
# the first. Not a row without a person with an email the organisation is not left with:
# imported again, it looks for its email first (the company a later contact's row creates
# with it: own.anew). A row without a person finding an organisation of another name by its
# email alone (a company renamed) does not take one that another row finds by its name (or
# id): it is another company with that mailbox, and is created: were it to rename the
# organisation, the other row would not find it in the file imported again; were it to
# repeat the other row, which writes its own email, it would not find it itself. Nor does
# such a row take it when an earlier row of the file has the row's name: it is that row's
# company at another address (a bakery's second shop with the mailbox it shares with the
# shipyard, which the file gives the bakery anew), and repeats it; taking the organisation
# would rename the shipyard once the earlier row has given the bakery its new email. Unless
# a later row of the file creates an organisation of the row's name with its email (a
# contact's row: its email becomes the new organisation's): imported again, the row would
# find that one by its name and email and change it, so it is an organisation of its own
# (own.anew), created by the first import. joins_id is the organisation of the register a
# row's person joins: the row's match, also for a repeat of the row that changes it (and a
# row picked up by it); a repeat of an earlier row's name and address or email joins that
# row's.
_PLAN = f"""
WITH staged AS MATERIALIZED (
    SELECT s.line, s.email, s.match_name, s.match_address, {_NAMES_A_PERSON} AS person,
        {_MATCH} AS match_id, s.record_id,
        CASE WHEN s.street IS NULL AND s.house_number IS NULL THEN 'none'
            WHEN s.street IS NOT NULL AND s.house_number IS NOT NULL THEN 'both'
        END AS address_given
    FROM import_rows s
    WHERE s.import_id = :import_id
), keyed AS (
    SELECT line, match_id, person, email, match_name, match_address,
        (match_id = record_id) IS TRUE AS by_id,
        CASE WHEN match_id IS NOT NULL THEN (match_id = record_id) IS TRUE OR (
            SELECT o.match_name = staged.match_name FROM organisations o WHERE o.id = match_id
        ) END AS named,
        (match_id = record_id) IS NOT TRUE AND (
            line > min(line) OVER (PARTITION BY match_name, match_address)
            OR (NOT person AND email IS NOT NULL
                AND line > min(line) FILTER (WHERE NOT person) OVER (PARTITION BY email))
        ) AS same_key,
        min(line) OVER (PARTITION BY match_name) AS name_line
    FROM staged
), named_again AS (
    SELECT *, NOT same_key AND NOT person AND named IS FALSE AND line > name_line AS name_again
    FROM keyed
), own AS (
    SELECT line, person, email, match_name, match_address, same_key, by_id, named, name_line,
        name_again AND NOT anew AS same_name,
        CASE WHEN NOT anew THEN match_id END AS match_id
    FROM named_again CROSS JOIN LATERAL (SELECT name_again AND EXISTS (
        SELECT 1 FROM keyed c
        WHERE c.line > named_again.line AND c.match_id IS NULL AND NOT c.same_key
            AND c.match_name = named_again.match_name AND c.email = named_again.email
    ) AS anew) AS a
), matched AS (
    SELECT line, match_id, person, email, match_name, match_address, same_key, same_name,
        by_id, named, name_line,
        bool_or(named) FILTER (WHERE NOT same_name) OVER by_match AS any_named,
        min(line) FILTER (WHERE NOT same_key AND NOT same_name AND named) OVER by_match
            AS first_named,
        min(line) FILTER (WHERE NOT same_key AND NOT same_name) OVER by_match AS first
    FROM own
    WINDOW by_match AS (PARTITION BY match_id)
), placed AS (
    SELECT line, person, email, match_name, match_address, same_key, same_name, name_line,
        CASE WHEN named OR NOT any_named THEN match_id END AS match_id,
        NOT same_key AND NOT same_name AND NOT by_id AND match_id IS NOT NULL
            AND (named OR NOT any_named) AND line > changer AS same_match,
        changer
    FROM matched CROSS JOIN LATERAL (
        SELECT CASE WHEN any_named THEN first_named ELSE first END AS changer
    ) AS c
), changed AS (
    SELECT c.line, c.match_id, f.match_name, w.email, w.address
    FROM placed c
    JOIN staged f ON f.line = c.line
    JOIN organisations o ON o.id = c.match_id
    CROSS JOIN LATERAL (SELECT
        CASE WHEN f.email IS NOT NULL AND NOT f.person THEN f.email ELSE o.email END AS email,
        CASE f.address_given WHEN 'both' THEN f.match_address WHEN 'none' THEN o.match_address
        END AS address
    ) AS w
    WHERE c.line = c.changer AND f.address_given IS NOT NULL
), left_behind AS (
    SELECT p.line FROM placed p JOIN changed c ON c.line = p.changer
    WHERE p.same_match AND NOT COALESCE(
        NOT p.person AND p.email = c.email
        OR p.match_name = c.match_name AND p.match_address = c.address
        OR p.person AND p.email = c.email AND p.match_name = c.match_name,
        false
    )
), creating AS (
    SELECT * FROM placed WHERE match_id IS NULL AND NOT same_key AND NOT same_name
), picked_up AS (
    SELECT DISTINCT ON (line) line, match_id FROM (
        SELECT p.line, c.line AS changer, c.match_id
        FROM creating p JOIN changed c
            ON c.match_name = p.match_name AND c.address = p.match_address AND c.line < p.line
        WHERE p.person OR p.email IS NULL OR p.email = c.email
        UNION ALL
        SELECT p.line, c.line, c.match_id
        FROM creating p JOIN changed c
            ON c.email = p.email AND c.match_name = p.match_name AND c.line < p.line
        WHERE p.person
    ) AS found
    ORDER BY line, changer
)
SELECT p.line,
    CASE WHEN b.line IS NULL AND NOT (same_key OR same_name OR same_match) THEN p.match_id END
        AS match_id,
    u.line IS NOT NULL OR b.line IS NULL AND (same_key OR same_name OR same_match) AS repeated,
    COALESCE(
        u.match_id,
        CASE WHEN b.line IS NULL AND NOT (same_key OR same_name) THEN p.match_id END
    ) AS joins_id,
    CASE WHEN same_name THEN name_line END AS name_line
FROM placed p LEFT JOIN left_behind b ON b.line = p.line LEFT JOIN picked_up u ON u.line = p.line
"""  # noqa: S608 (built from constants)


# Staged rows a single edit would refuse, as the plan writes them (a row repeating another
# writes no organisation): a retired district or need given to an organisation that does not
# have it (a new one, or a matched one without it: a retired entry is kept where it is, not
# given anew, see vocab.district_by_name), a kind that cannot own premises for a matched
# organisation that owns some (see organisations.check_owner_kind), and an address erased on
# request (the person's or the organisation's: a row has one email; see suppressions.py).
_REFUSED = f"""
WITH staged AS MATERIALIZED (
    SELECT s.line, s.kind, s.district, s.needs, s.email, plan.match_id, plan.repeated
    FROM ({_PLAN}) AS plan JOIN import_rows s ON s.import_id = :import_id AND s.line = plan.line
)
SELECT s.line, 'district' AS field, s.district AS name
FROM staged s JOIN districts d ON d.name = s.district AND NOT d.active
WHERE NOT s.repeated AND NOT EXISTS (
    SELECT 1 FROM organisations o WHERE o.id = s.match_id AND o.district_id = d.id
)
UNION ALL
SELECT s.line, 'needs', n.label
FROM staged s, unnest(s.needs) AS k(key) JOIN needs n ON n.key = k.key AND NOT n.active
WHERE NOT s.repeated AND NOT EXISTS (
    SELECT 1 FROM organisation_needs x
    WHERE x.organisation_id = s.match_id AND x.need_key = n.key
)
UNION ALL
SELECT s.line, 'kind', o.name
FROM staged s JOIN organisations o ON o.id = s.match_id
WHERE s.kind <> o.kind AND NOT s.kind = ANY(CAST(:owner_kinds AS text[]))
    AND EXISTS (SELECT 1 FROM premises p WHERE p.owner_id = o.id)
UNION ALL
SELECT s.line, 'email', NULL FROM staged s WHERE s.email IS NOT NULL AND {SQL_SUPPRESSED}
"""  # noqa: S608 (built from constants)


def _mapping_of(table: Table, given: Mapping[str, str | None] | None) -> dict[str, str]:
    return column_mapping(table.headers, given or {})


def preview_import(
    session: Session,
    *,
    content: bytes,
    filename: str,
    mapping: Mapping[str, str | None] | None,
    actor: str,
    background: bool | None = None,
    enqueue: Callable[[str], Any] | None = None,
) -> Import:
    """Read the file and check every row, and say what a commit would do; nothing of the
    register is written. The import is kept (with the file and its checked rows) for the
    commit. Large files (or when asked) are checked by a worker: the import is returned
    ``checking``, and is ``previewed`` once the worker is done."""
    table = read_table(content)
    columns = _mapping_of(table, mapping)
    record = Import(
        status="checking",
        filename="".join(char for char in filename if char.isprintable())[:255],
        encoding=table.encoding,
        delimiter=table.delimiter,
        warnings=list(table.warnings),
        mapping=columns,
        content=content,
        total_rows=len(table.rows),
        created_by=actor,
    )
    session.add(record)
    session.flush()
    if enqueue is not None and (
        background if background is not None else record.total_rows > BACKGROUND_ROWS
    ):
        session.commit()
        try:
            enqueue(str(record.id))
        except Exception:  # the broker is down: not left "checking" for ever
            _fail(session, record.id, {"file": ["The check could not be queued; upload again."]})
            raise
        return record
    _check(session, record, table)
    session.commit()
    return record


def _check(
    session: Session, record: Import, table: Table, progress: Progress | None = None
) -> None:
    """Stage the valid rows, keep the errors and the counts: the import is previewed."""
    record.valid_rows, record.errors = _stage(session, record.id, table, record.mapping, progress)
    record.created_count, record.updated_count, record.skipped_count = _counts(session, record.id)
    rows = _person_rows(session, record, _PLAN)
    planned = _plan_people(rows, _register_people(session, rows)).values()
    record.people_created_count = sum(person is None for person in planned)
    record.people_linked_count = len(planned) - record.people_created_count
    record.status = "previewed"
    record.processed_rows = record.total_rows  # every row checked


def check_import(
    session: Session, import_id: uuid.UUID, *, progress: Progress | None = None
) -> Import:
    """A worker's preview of a large file: check its rows (see :func:`preview_import`).
    Safe to run twice: rows staged by a run that died are replaced."""
    if not _lock(session, "check", import_id):  # another worker is at it
        session.rollback()
        return get_import(session, import_id)
    record = get_import(session, import_id)
    if record.status != "checking":
        session.rollback()
        return record
    _unstage(session, import_id)
    _check(session, record, read_table(record.content), progress)
    session.commit()
    return record


def _lock(session: Session, step: str, import_id: uuid.UUID) -> bool:
    """A transaction-level advisory lock on one step of an import, rather than a row lock,
    so that progress can be written meanwhile."""
    key = _lock_key(f"{step}-{import_id}")
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(key))))


def _lock_key(name: str) -> int:
    return zlib.crc32(f"contacts-import-{name}".encode())


def take_turn(session: Session) -> None:
    """One import writes at a time: a file committed twice at once, or two files naming the
    same new organisation, would each see the other's rows as new (the second waits, then
    matches what the first created). An erasure takes its turn too: an import written
    meanwhile is either done before it (and what it wrote is erased) or checks its rows
    against the suppression afterwards (see _ensure_staged)."""
    session.execute(select(func.pg_advisory_xact_lock(_lock_key("commit-any"))))


def get_import(session: Session, import_id: uuid.UUID) -> Import:
    return get_or_404(session, Import, import_id, "import")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise Invalid({"mode": [f"Must be one of: {', '.join(MODES)}."]})


def commit_import(
    session: Session,
    import_id: uuid.UUID,
    *,
    mode: str,
    actor: str,
    background: bool | None,
    enqueue: Callable[[str], Any],
) -> Import:
    """Write a previewed import: here, or (large files, or when asked) in a worker. The
    import's row is locked first: of two commits at once, the second waits and then finds
    it committed (409)."""
    _check_mode(mode)
    record = lock_or_404(session, Import, import_id, "import")
    if record.status == "checking":
        raise Conflict("This import is still being checked; commit it once it is previewed.")
    if record.status not in ("previewed", "queued"):
        raise Conflict(f"This import is {record.status} already.")
    if mode == "all_or_nothing" and record.errors:
        raise Invalid(
            {
                "mode": [
                    f"{len(record.errors)} rows are invalid; fix them or import valid rows only."
                ]
            }
        )
    record.mode = mode
    if background if background is not None else record.total_rows > BACKGROUND_ROWS:
        record.status = "queued"
        session.commit()
        try:
            enqueue(str(record.id))
        except Exception:  # the broker is down: it can be committed again later
            record.status = "previewed"
            session.commit()
            raise
        return record
    return run_import(session, import_id, actor=actor)


def run_import(
    session: Session,
    import_id: uuid.UUID,
    *,
    actor: str | None = None,
    progress: Progress | None = None,
) -> Import:
    """Apply an import in one transaction: all its rows are written, or none.

    Safe to run twice: the import row is locked, and a finished import is left alone.
    """
    locked = _lock(session, "commit", import_id)
    record = get_import(session, import_id)
    session.refresh(record)  # as it is now that the step is ours, not as the session held it
    if not locked:  # another worker is at it
        session.rollback()
        return record
    if record.status not in ("previewed", "queued", "running"):
        session.rollback()
        return record
    actor = actor or record.created_by
    try:
        take_turn(session)
        _ensure_staged(session, record)
        if record.mode == "all_or_nothing" and record.errors:
            raise Invalid({"mode": [f"{len(record.errors)} rows are invalid."]})
        written = _apply(session, record, actor, progress)
    except (Invalid, Conflict) as exc:
        session.rollback()
        _fail(session, import_id, exc.extensions.get("errors") or {"import": [exc.detail]})
        raise
    _unstage(session, import_id)
    record.status = "committed"
    record.processed_rows = record.total_rows
    record.created_count = written.created
    record.updated_count = written.updated
    record.skipped_count = written.unchanged + written.repeated
    record.people_created_count = written.people_created
    record.people_linked_count = written.people_linked
    record.finished_at = utcnow()
    session.commit()
    return record


# Staged rows naming a district or a need that is gone (renamed) or retired since the
# preview, or an address erased since (see suppressions.py).
_STALE = f"""
SELECT count(*) FROM import_rows s
WHERE s.import_id = :import_id AND (
    (s.district IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM districts d WHERE d.name = s.district AND d.active
    ))
    OR EXISTS (
        SELECT 1 FROM unnest(s.needs) AS k(key)
        WHERE k.key NOT IN (SELECT key FROM needs WHERE active)
    )
    OR (s.email IS NOT NULL AND {SQL_SUPPRESSED})
)
"""  # noqa: S608 (built from constants)


def _ensure_staged(session: Session, record: Import) -> None:
    """The checked rows of the preview; checked again from the stored file if they are not
    all there (import_rows is unlogged: a database crash empties it), if a district or
    a need they name was renamed or retired since (the file's name for it may be unknown
    now, or the row may give a retired entry anew), or if an address in them was erased
    since (the row is refused now).

    The districts the rows name are held until the commit (see vocab.hold_district), before
    they are checked and before any organisation is locked: a rename waits for the import
    and then renames in the organisations it created too. Rows staged anew are checked
    against the districts as they are, so all of them are held for that (a short list)."""
    hold_districts(session, select(ImportRow.district).where(ImportRow.import_id == record.id))
    staged = session.scalar(
        select(func.count()).select_from(ImportRow).where(ImportRow.import_id == record.id)
    )
    if staged == record.valid_rows and not session.scalar(text(_STALE), {"import_id": record.id}):
        return
    hold_districts(session, select(District.name))
    _unstage(session, record.id)
    table = read_table(record.content)
    record.valid_rows, record.errors = _stage(session, record.id, table, record.mapping)
    record.total_rows = len(table.rows)


def _unstage(session: Session, import_id: uuid.UUID) -> None:
    session.execute(
        delete(ImportRow)
        .where(ImportRow.import_id == import_id)
        .execution_options(synchronize_session=False)
    )


def _fail(session: Session, import_id: uuid.UUID, errors: Mapping[str, Any]) -> None:
    record = get_import(session, import_id)
    record.status = "failed"
    record.finished_at = utcnow()
    record.errors = [*record.errors, {"line": None, "errors": dict(errors), "values": {}}]
    session.commit()


# How a new organisation's snapshot (the shape of organisations.snapshot) reads from import_rows.
_SNAPSHOT_SQL = {
    **{field: f"s.{field}" for field in organisations.FIELDS},
    "kind": f"COALESCE(s.kind, '{DEFAULT_KIND}')",
    "status": "COALESCE(s.status, 'prospect')",
    "tags": "COALESCE(s.tags, '{}')",
    "notes": "COALESCE(s.notes, '')",
    "district": "s.district",
    "needs": "COALESCE(s.needs, '{}')",
    "archived": "false",
    "id": "p.new_id::text",
}


def _json_object(keys: tuple[str, ...]) -> str:
    return "jsonb_build_object(" + ", ".join(f"'{k}', {_SNAPSHOT_SQL[k]}" for k in keys) + ")"


_NEW_ROWS = """
FROM import_plan p
JOIN import_rows s ON s.import_id = :import_id AND s.line = p.line
WHERE p.match_id IS NULL AND NOT p.repeated
"""
_SNAPSHOT_KEYS = (*organisations.FIELDS, "district", "needs", "archived")
_ORGANISATION_COLUMNS = (
    *(field for field in organisations.FIELDS if field not in ("status", "tags", "notes")),
    "status",
    "tags",
    "notes",
)
# The new organisations are created in the file's order, a microsecond apart: where a match
# takes the oldest of several (sharing a mailbox, or a name and address), it is the one of
# the earlier row, the same on every import, rather than whichever random id sorts first.
_CREATED = "CAST(:now AS timestamptz) + s.line * interval '1 microsecond'"
_INSERT_ORGANISATIONS = f"""
INSERT INTO organisations (
    id, {", ".join(_ORGANISATION_COLUMNS)}, district_id, archived, version, created_at,
    updated_at, search_text, search_vector, name_vector, match_name, match_address, match_phone
)
SELECT p.new_id, {", ".join(_SNAPSHOT_SQL[c] for c in _ORGANISATION_COLUMNS)},
    (SELECT d.id FROM districts d WHERE d.name = s.district), false, 1, {_CREATED}, {_CREATED},
    s.search_text, s.search_vector, s.name_vector, s.match_name, s.match_address, s.match_phone
{_NEW_ROWS}
ORDER BY s.line
"""  # noqa: S608 (built from constants)
_INSERT_NEEDS = f"""
INSERT INTO organisation_needs (organisation_id, need_key)
SELECT p.new_id, unnest(s.needs) {_NEW_ROWS}
"""
# History and events of the new organisations, each snapshot built once: an event's
# payload is the snapshot without the fields events leave out, with the id.
_NOT_IN_EVENTS = [key for key in _SNAPSHOT_KEYS if key not in organisations.EVENT_FIELDS]
_INSERT_HISTORY_AND_EVENTS = f"""
WITH created AS MATERIALIZED (
    SELECT p.new_id, s.line, {_json_object(_SNAPSHOT_KEYS)} AS snapshot
    {_NEW_ROWS}
), history AS (
    INSERT INTO changes (entity_type, entity_id, actor, at, action, before, after)
    SELECT :entity, new_id::text, :actor, :now, 'created', NULL, snapshot
    FROM created ORDER BY line
)
INSERT INTO outbox (event_id, type, aggregate_id, version, payload, occurred_at)
SELECT gen_random_uuid(), :type, new_id::text, 1,
    (snapshot - CAST(:not_in_events AS text[])) || jsonb_build_object('id', new_id::text), :now
FROM created ORDER BY line
"""  # noqa: S608 (built from constants)


# Matched rows without a person whose every field is the organisation's already: the
# use case would find nothing to change (a conservative test: a row it cannot be sure of
# goes through the use case).
# A row naming a person leaves the email of an organisation it matches alone: in a file of
# contacts (Outlook's) the email is the person's; it is an organisation's only when the row
# creates the organisation.
_SAME = " AND ".join(
    [
        *(
            f"(s.{field} IS NULL OR s.{field} = o.{field})"
            for field in organisations.FIELDS
            if field != "email"
        ),
        f"(s.email IS NULL OR s.email = o.email OR {_NAMES_A_PERSON})",
        "(s.district IS NULL OR s.district = (SELECT d.name FROM districts d"
        " WHERE d.id = o.district_id))",
        "(s.needs IS NULL OR s.needs = ARRAY(SELECT n.key FROM organisation_needs x"
        " JOIN needs n ON n.key = x.need_key WHERE x.organisation_id = o.id ORDER BY n.label))",
    ]
)
_MARK_UNCHANGED = f"""
UPDATE import_plan p SET unchanged = true
FROM import_rows s, organisations o
WHERE s.import_id = :import_id AND s.line = p.line AND o.id = p.match_id
    AND s.first_name IS NULL AND s.last_name IS NULL AND {_SAME}
"""  # noqa: S608 (built from constants)

# The preview's counts: rows that would create an organisation, change one, or change
# nothing (they repeat an earlier row, or match one whose fields are the row's already).
_COUNTS = f"""
SELECT count(*) FILTER (WHERE plan.match_id IS NULL AND NOT plan.repeated),
    count(*) FILTER (WHERE plan.match_id IS NOT NULL AND NOT COALESCE({_SAME}, false)),
    count(*) FILTER (
        WHERE plan.repeated OR (plan.match_id IS NOT NULL AND COALESCE({_SAME}, false))
    )
FROM ({_PLAN}) AS plan
JOIN import_rows s ON s.import_id = :import_id AND s.line = plan.line
LEFT JOIN organisations o ON o.id = plan.match_id
"""  # noqa: S608 (built from constants)


def _counts(session: Session, import_id: uuid.UUID) -> tuple[int, int, int]:
    """(would be created, would be updated, would change nothing)."""
    row = session.execute(text(_COUNTS), {"import_id": import_id}).one()
    return row[0], row[1], row[2]


# The rows naming a person, with the organisation their person joins: the one the row
# matches (also as a repeat of the row that changes it: joins_id), or the line of the row
# that creates it. A row repeating an earlier one (a second contact at a company, as
# Outlook exports them) joins the new organisation of its folded name and address, else
# one with its email, as a match would find it once the new ones are written; or, when the
# first row of that name and address matched an organisation (by its id: the register's
# name differs; or in a file imported again), that organisation; or, when that first row
# repeats the company of an earlier row of its name (found another company by a mailbox
# they share: name_line), that company. Over the plan of the preview (_PLAN) or of the
# commit (import_plan) alike, so that the preview plans the same people as the commit.
_PERSON_ROWS = """
WITH plan AS MATERIALIZED ({plan}), placed AS (
    SELECT plan.line, plan.joins_id, plan.repeated, s.email, s.first_name, s.last_name,
        min(plan.line) FILTER (WHERE plan.match_id IS NULL AND NOT plan.repeated)
            OVER (PARTITION BY s.match_name, s.match_address) AS by_address,
        first_value(plan.joins_id)
            OVER (PARTITION BY s.match_name, s.match_address ORDER BY plan.line) AS first_match,
        first_value(plan.name_line)
            OVER (PARTITION BY s.match_name, s.match_address ORDER BY plan.line) AS head_name_line,
        min(plan.line) FILTER (WHERE plan.match_id IS NULL AND NOT plan.repeated)
            OVER (PARTITION BY s.email) AS by_email
    FROM plan JOIN import_rows s ON s.import_id = :import_id AND s.line = plan.line
)
SELECT p.line,
    COALESCE(
        p.joins_id,
        CASE WHEN p.repeated AND p.by_address IS NULL THEN COALESCE(p.first_match, t.joins_id) END
    ),
    CASE
        WHEN p.joins_id IS NOT NULL THEN NULL
        WHEN NOT p.repeated THEN p.line
        ELSE COALESCE(
            p.by_address,
            CASE WHEN t.match_id IS NULL AND NOT t.repeated THEN t.line END,
            CASE WHEN p.email IS NOT NULL THEN p.by_email END
        )
    END AS creator,
    p.email, p.first_name, p.last_name
FROM placed p LEFT JOIN plan t ON t.line = p.head_name_line
WHERE p.first_name IS NOT NULL OR p.last_name IS NOT NULL
ORDER BY p.line
"""
_COMMIT_PLAN = "SELECT line, match_id, repeated, joins_id, name_line FROM import_plan"
# The people a plan of the rows' people starts from: those at the organisations the rows
# match, and the live ones with the rows' emails; with the organisations of their roles,
# oldest first.
_REGISTER_PEOPLE = """
WITH wanted AS (
    SELECT r.person_id AS id FROM roles r
    WHERE r.organisation_id = ANY(CAST(:organisation_ids AS uuid[]))
    UNION
    SELECT p.id FROM people p
    WHERE p.email = ANY(CAST(:emails AS text[])) AND p.archived IS false
)
SELECT p.id, p.first_name, p.last_name, p.email, p.archived,
    ARRAY(SELECT r.organisation_id FROM roles r WHERE r.person_id = p.id) AS organisation_ids
FROM people p JOIN wanted w ON w.id = p.id
ORDER BY p.created_at, p.id
"""
# Where each planned person goes: a matched organisation, or the one a row creates.
_PERSON_ORGANISATIONS = """
UPDATE import_plan p SET person_org = COALESCE(v.organisation_id, c.new_id)
FROM unnest(
    CAST(:lines AS integer[]), CAST(:organisation_ids AS uuid[]), CAST(:creators AS integer[])
) AS v(line, organisation_id, creator)
LEFT JOIN import_plan c ON c.line = v.creator
WHERE p.line = v.line
"""

_LOCK_MATCHED = """
SELECT 1 FROM organisations
WHERE id IN (SELECT match_id FROM import_plan WHERE match_id IS NOT NULL)
    OR id = ANY(CAST(:also AS uuid[]))
ORDER BY id FOR NO KEY UPDATE
"""

_FILL_PLAN = f"""
INSERT INTO import_plan (line, match_id, repeated, joins_id, name_line, new_id)
SELECT *, gen_random_uuid() FROM ({_PLAN}) AS plan
"""  # noqa: S608 (built from constants)

_PLAN_TABLE = table(
    "import_plan",
    column("line", Integer),
    column("match_id", Uuid),
    column("repeated", Boolean),
    column("new_id", Uuid),
    column("unchanged", Boolean),
    column("person_org", Uuid),
)

# A record of the register by id, or the one the row of that line creates (an organisation
# or a person).
_Ref = uuid.UUID | int


@dataclass(frozen=True)
class _PersonRow:
    """A row's person, and the organisation they join: a matched one's id, or the line of
    the row that creates it."""

    line: int
    organisation: _Ref
    email: str | None
    first_name: str
    last_name: str


@dataclass
class _Person:
    """A person as the plan sees them, with the organisations of their roles."""

    ref: _Ref
    first_name: str
    last_name: str
    email: str | None
    archived: bool
    organisations: set[_Ref]


class _Written(NamedTuple):
    """What a commit wrote: the import's counts."""

    created: int
    updated: int
    unchanged: int
    repeated: int
    people_created: int
    people_linked: int


def _person_rows(session: Session, record: Import, plan: str) -> list[_PersonRow]:
    """The rows naming a person that join an organisation, in line order (none, without
    a query, in a file without a column for a person's name)."""
    if not {"first_name", "last_name"} & set(record.mapping.values()):
        return []
    found = session.execute(text(_PERSON_ROWS.format(plan=plan)), {"import_id": record.id})
    return [
        _PersonRow(line, match_id or creator, email, first or "", last or "")
        for line, match_id, creator, email, first, last in found
        if match_id is not None or creator is not None
    ]


def _register_people(session: Session, rows: list[_PersonRow]) -> list[_Person]:
    if not rows:
        return []
    params = {
        "organisation_ids": list(
            {r.organisation for r in rows if isinstance(r.organisation, uuid.UUID)}
        ),
        "emails": list({row.email for row in rows if row.email}),
    }
    return [
        _Person(person_id, first, last, email, archived, set(organisation_ids))
        for person_id, first, last, email, archived, organisation_ids in session.execute(
            text(_REGISTER_PEOPLE), params
        )
    ]


def _plan_people(rows: list[_PersonRow], register: list[_Person]) -> dict[int, _Ref | None]:
    """What the commit does with each row's person, by line: None makes a new person, a
    person's ref gives them a role at the row's organisation; a row left out has its person
    there already. In line order, as the commit writes them, so that a row finds the person
    of an earlier one as it finds one of the register.

    At the row's organisation: the same email and last name, or without an email the same
    name (the last name, for a row naming it alone), is the person there (see
    _there_already). Elsewhere only an
    email tells a person (a name alone does not: two Thomas Schmidt at two companies are
    two people): the oldest live person with the row's email whose name may be the row's
    (see _may_be). The first row's values stay; a later one fills an empty first name."""
    at: dict[_Ref, list[_Person]] = {}
    by_email: dict[str, list[_Person]] = {}
    for person in register:
        for organisation in person.organisations:
            at.setdefault(organisation, []).append(person)
        if person.email and not person.archived:
            by_email.setdefault(person.email, []).append(person)
    planned: dict[int, _Ref | None] = {}
    for row in rows:
        if any(_there_already(person, row) for person in at.get(row.organisation, ())):
            continue
        found = next((p for p in by_email.get(row.email or "", ()) if _may_be(p, row)), None)
        if found is None:
            found = _Person(row.line, row.first_name, row.last_name, row.email, False, set())
            if row.email:
                by_email.setdefault(row.email, []).append(found)
            planned[row.line] = None
        elif row.organisation in found.organisations:
            continue  # there already, named as another row named them
        else:
            planned[row.line] = found.ref
            found.first_name = found.first_name or row.first_name
        found.organisations.add(row.organisation)
        at.setdefault(row.organisation, []).append(found)
    return planned


def _there_already(person: _Person, row: _PersonRow) -> bool:
    """Whether the person at the row's organisation is the row's: the same email and last
    name; for a row without an email, the same first and last name, or for one naming the
    last name alone, the same last name (folded): ``Brandt`` is Bert Brandt there, also once
    a later row of the file gave him his first name, so that the file imported again adds no
    one. A row naming Bert Brandt is not a Brandt there without a first name, who may be
    someone else of the family (Clara, in another row)."""
    if row.email:
        return person.email == row.email and person.last_name == row.last_name
    if not row.first_name:
        return match_person_name(person.last_name) == match_person_name(row.last_name)
    return person.first_name == row.first_name and person.last_name == row.last_name


def _may_be(person: _Person, row: _PersonRow) -> bool:
    """Whether the row's name may be that of the person with its email: the same last name
    and the same first name (folded: ``Mueller`` is ``Müller``), or one of the first names
    missing or the other's initial (``A.``). A mailbox two people share (``info@`` of a
    family business) is no reason to make them one."""
    if match_person_name(person.last_name) != match_person_name(row.last_name):
        return False
    short, long = sorted(
        (match_person_name(person.first_name), match_person_name(row.first_name)), key=len
    )
    return not short or short == long or (len(short) == 1 and long.startswith(short))


def _plan_and_lock_people(
    session: Session, rows: list[_PersonRow], matched: bool
) -> dict[int, _Ref | None]:
    """The plan of the rows' people, with the people it gives a role locked, and before them
    the matched organisations and those of their roles (whose search text names them), in
    id order as every edit locks them. Planned again once they are locked, as they are
    then; should that plan need more (someone changed meanwhile), the locks taken are let
    go and all are taken once more, in that order: an organisation locked while a person
    is held would wait for a write that holds it and waits for the person (a deadlock). In
    a savepoint, so that what the commit wrote before stays."""
    planned, linked, theirs = _planned(session, rows)
    for _ in range(LOCK_ATTEMPTS):
        savepoint = session.begin_nested()
        if matched or theirs:
            session.execute(text(_LOCK_MATCHED), {"also": list(theirs)})
        people.lock_people(session, linked)
        planned, linked_now, theirs_now = _planned(session, rows)
        if linked_now <= linked and theirs_now <= theirs:
            savepoint.commit()  # the locks stay with the transaction
            return planned
        savepoint.rollback()  # and the locks taken in it
        linked |= linked_now
        theirs |= theirs_now
    raise Conflict("The people of the file keep changing meanwhile; try again.")


def _planned(
    session: Session, rows: list[_PersonRow]
) -> tuple[dict[int, _Ref | None], set[uuid.UUID], set[uuid.UUID]]:
    """The plan of the rows' people as the register is now, the people it gives a role
    and the organisations of their roles."""
    register = _register_people(session, rows)
    planned = _plan_people(rows, register)
    linked = {ref for ref in planned.values() if isinstance(ref, uuid.UUID)}
    theirs = {
        organisation
        for person in register
        if person.ref in linked
        for organisation in person.organisations
        if isinstance(organisation, uuid.UUID)
    }
    return planned, linked, theirs


def _apply(session: Session, record: Import, actor: str, progress: Progress | None) -> _Written:
    """What was written: new organisations set-based, the others and the people one by
    one through the use cases."""
    params: dict[str, Any] = {"import_id": record.id, "actor": actor, "now": utcnow()}
    # Memory for this transaction's sorts and its snapshots of the new rows, which would
    # otherwise go through temporary files (the default is 4 MB).
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    session.execute(
        text(
            "CREATE TEMP TABLE import_plan"
            " (line integer PRIMARY KEY, match_id uuid, repeated boolean, joins_id uuid,"
            " name_line integer, new_id uuid,"
            " unchanged boolean NOT NULL DEFAULT false, person_org uuid)"
            " ON COMMIT DROP"
        )
    )
    session.execute(
        text(_FILL_PLAN),
        params,
    )
    # A temporary table has no statistics until analysed; the joins below need them.
    session.execute(text("ANALYZE import_plan"))
    repeated, matched = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE repeated), count(*) FILTER (WHERE match_id IS NOT NULL)"
            " FROM import_plan"
        )
    ).one()
    created = session.execute(text(_INSERT_ORGANISATIONS), params).rowcount  # type: ignore[attr-defined]
    if created:
        session.execute(text(_INSERT_NEEDS), params)
        session.execute(
            text(_INSERT_HISTORY_AND_EVENTS),
            {
                **params,
                "entity": organisations.ENTITY,
                "type": "contacts.organisation.created",
                "not_in_events": _NOT_IN_EVENTS,
            },
        )
        events_written(session)
    if progress is not None:
        progress(created + repeated)
    updated = unchanged = 0
    # Matched organisations (a file imported again) are locked first, in id order as every
    # edit locks them, so that what "would change nothing" compares with stays as it is
    # until the commit; with them those of the people who get a role elsewhere.
    person_rows = _person_rows(session, record, _COMMIT_PLAN)
    planned = _plan_and_lock_people(session, person_rows, bool(matched))
    if matched:  # rows that would change nothing are left alone
        unchanged = session.execute(text(_MARK_UNCHANGED), params).rowcount  # type: ignore[attr-defined]
    if planned:
        placed = [row for row in person_rows if row.line in planned]
        session.execute(
            text(_PERSON_ORGANISATIONS),
            {
                "lines": [row.line for row in placed],
                "organisation_ids": [_organisation_id(row) for row in placed],
                "creators": [None if _organisation_id(row) else row.organisation for row in placed],
            },
        )
    # Matched rows and rows with a person to write: one by one, as single edits.
    plan = _PLAN_TABLE
    others = session.execute(
        select(ImportRow, plan.c.match_id, plan.c.person_org)
        .join(plan, plan.c.line == ImportRow.line)
        .where(ImportRow.import_id == record.id)
        .where(
            or_(
                and_(plan.c.match_id.is_not(None), plan.c.unchanged.is_(False)),
                plan.c.person_org.is_not(None),
            )
        )
        .order_by(ImportRow.line)
    ).all()
    # Rows that created an organisation or repeat one are counted already.
    start = created + repeated - len([row for row in others if row.match_id is None])
    # The organisations to update, locked in id order as every edit locks them (a PATCH at
    # the same time waits, or this import waits for it).
    matched_orgs = organisations.lock_organisations(
        session, {row.match_id for row in others if row.match_id is not None}
    )
    made: dict[int, uuid.UUID] = {}
    for done, (row, match_id, person_org) in enumerate(others, start + 1):
        if match_id is not None:
            org = matched_orgs[match_id]
            values = {c: getattr(row, c) for c in VALUE_COLUMNS if getattr(row, c) is not None}
            if row.first_name or row.last_name:  # the email is the person's (see _SAME)
                values.pop("email", None)
            if organisations.change(session, org, values, actor=actor):
                updated += 1
            else:
                unchanged += 1
        if person_org is not None:
            _write_person(session, row, person_org, planned[row.line], made, actor)
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    people_created = len(made)
    return _Written(
        created,
        updated,
        unchanged,
        repeated,
        people_created,
        len(planned) - people_created,
    )


def _organisation_id(row: _PersonRow) -> uuid.UUID | None:
    return row.organisation if isinstance(row.organisation, uuid.UUID) else None


ROLE_WORDS = (
    ("geschaftsfuhr", "managing_director"),
    ("managing director", "managing_director"),
    ("ceo", "managing_director"),
    ("inhaber", "owner"),
    ("owner", "owner"),
    ("verwalt", "property_manager"),
    ("property", "property_manager"),
)


def _role_of(job_title: str | None) -> str:
    folded = strip_accents(job_title or "")
    return next((role for word, role in ROLE_WORDS if word in folded), "contact_person")


def _write_person(
    session: Session,
    row: ImportRow,
    organisation_id: uuid.UUID,
    person_ref: _Ref | None,
    made: dict[int, uuid.UUID],
    actor: str,
) -> None:
    """The row's person as planned (see _plan_people), with a role at the organisation:
    a new person (``made`` keeps their id by line), or one of the register or of an earlier
    row, changed as a PATCH of their roles changes them (history, version, event), their
    empty first name and phone filled from the row."""
    role = {"organisation_id": organisation_id, "role": _role_of(row.job_title)}
    phone = row.person_phone or row.phone
    if person_ref is None:
        made[row.line] = people.add_person(
            session,
            {
                "first_name": row.first_name or "",
                "last_name": row.last_name or "",
                "email": row.email,
                "phone": phone,
                "roles": [role],
            },
            actor=actor,
        ).id
        return
    person_id = made[person_ref] if isinstance(person_ref, int) else person_ref
    person = session.get(Person, person_id)  # locked (see _plan_and_lock_people) or new
    assert person is not None
    held = [{"organisation_id": r.organisation_id, "role": r.role} for r in person.roles]
    data: dict[str, Any] = {"roles": [*held, role]}
    if not person.first_name and row.first_name:
        data["first_name"] = row.first_name
    if person.phone is None and phone:
        data["phone"] = phone
    people.change_person(session, person, data, actor=actor)


def retention() -> timedelta:
    return timedelta(days=int(os.environ.get("CONTACTS_IMPORT_RETENTION_DAYS", RETENTION_DAYS)))


def purge_imports(session: Session) -> int:
    """Delete the imports uploaded longer ago than the retention: their files, checked rows
    and error reports. Returns how many."""
    cutoff = utcnow() - retention()
    deleted = session.execute(
        delete(Import)
        .where(Import.created_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(deleted)


def holding(session: Session, address: str) -> list[uuid.UUID]:
    """The imports whose file holds ``address`` (a folded email) anywhere, in any case, as
    a whole address (``anna@beispiel.de`` is not in ``hanna@beispiel.de``); their checked
    rows and error reports come from the file. One file at a time: each may be as large
    as a request may be."""
    pattern = whole_address(address)
    found = []
    for import_id in session.scalars(select(Import.id).order_by(Import.id)).all():
        content = session.scalar(select(Import.content).where(Import.id == import_id))
        if content is not None and pattern.search(composed(decode(content).text)):
            found.append(import_id)
    return found


def erase_uploads(session: Session, import_ids: Collection[uuid.UUID]) -> int:
    """Delete these imports (file, checked rows, error report) in the caller's transaction;
    how many. A worker checking or committing one of them is waited for, and one that starts
    meanwhile finds the import taken and leaves it (see _lock). Their locks are taken in id
    order, and before take_turn, as a commit takes them."""
    for import_id in sorted(import_ids):
        for step in ("check", "commit"):
            key = _lock_key(f"{step}-{import_id}")
            session.execute(select(func.pg_advisory_xact_lock(key)))
    if not import_ids:
        return 0
    deleted = session.execute(
        delete(Import)
        .where(Import.id.in_(list(import_ids)))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return int(deleted)


def set_progress(
    session: Session, import_id: uuid.UUID, processed: int, *, status: str | None = None
) -> None:
    """Progress, written apart from the import's own transaction so that it shows; an
    import that is done already (a task delivered again) is left as it is."""
    values: dict[str, Any] = {"processed_rows": processed}
    if status is not None:
        values["status"] = status
    session.execute(
        update(Import).where(Import.id == import_id, Import.status.in_(UNFINISHED)).values(**values)
    )
    session.commit()


def fail_import(session: Session, import_id: uuid.UUID) -> None:
    """Record that a worker was stopped by an unexpected error (its transaction is rolled
    back: nothing was written)."""
    session.rollback()
    record = session.get(Import, import_id)
    if record is not None and record.status in UNFINISHED:
        _fail(session, import_id, {"import": ["An unexpected error stopped it; try again."]})


def error_report(session: Session, import_id: uuid.UUID) -> str:
    """The invalid rows as CSV: the original columns, then line and messages."""
    record = get_import(session, import_id)
    headers = read_table(record.content).headers  # in the file's order (JSONB keeps none)
    rows = [
        {
            **error["values"],
            "Zeile": error["line"],
            "Fehler": "; ".join(
                f"{name}: {' '.join(map(str, messages))}"
                for name, messages in error["errors"].items()
            ),
        }
        for error in record.errors
    ]
    return write_csv([*headers, "Zeile", "Fehler"], rows)
