"""CSV import: preview (a dry run with per-row errors), then commit all-or-nothing or only
the valid rows, in one transaction; large files run in a worker and report progress.

The preview checks and folds every row once and keeps the valid ones in ``import_rows``
(written with COPY). The commit writes them with set-based SQL: which rows match existing
organisations or repeat an earlier row, then the new organisations, their needs, their
history and their events, each one ``INSERT ... SELECT``. Rows that match an organisation
(updated where different) and rows naming a person go through the same use cases as
single edits.

Re-importing a file creates no duplicates: a row matches an organisation by id (our own
export), by email, or by folded name and address.
"""

from __future__ import annotations

import os
import re
import uuid
import zlib
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any

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
from ..models import OWNER_KINDS, District, Import, ImportRow, Need, Person, Role
from ..normalise import (
    fold_name,
    match_address,
    match_name,
    match_phone,
    slug,
    strip_accents,
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
    their errors."""
    found: dict[int, dict[str, list[str]]] = {}
    params = {"import_id": import_id, "owner_kinds": list(OWNER_KINDS)}
    for line, field, name in session.execute(text(_REFUSED), params):
        message = _REFUSALS[field].format(name=name)
        found.setdefault(line, {}).setdefault(field, []).append(message)
    if not found:
        return []
    session.execute(
        delete(ImportRow)
        .where(ImportRow.import_id == import_id, ImportRow.line.in_(found))
        .execution_options(synchronize_session=False)
    )
    cells = dict(table.rows)
    return [
        {"line": line, "errors": errors, "values": raw_row(table.headers, cells[line])}
        for line, errors in found.items()
    ]


# For each staged row: the live organisation it matches (by id, by email, by folded name
# and address), and whether it repeats an earlier row of the file (same key or email).
# A row naming a person carries the person's email (a file of contacts): it finds the
# organisation by its name and address first, by that email only when nothing else does.
_BY_EMAIL = """(SELECT o.id FROM organisations o
     WHERE o.email = s.email AND o.archived IS false LIMIT 1)"""
_NAMES_A_PERSON = "(s.first_name IS NOT NULL OR s.last_name IS NOT NULL)"
_MATCH = f"""
COALESCE(
    (SELECT o.id FROM organisations o
     WHERE o.id = s.record_id AND o.archived IS false),
    CASE WHEN NOT {_NAMES_A_PERSON} THEN {_BY_EMAIL} END,
    (SELECT o.id FROM organisations o
     WHERE o.match_name = s.match_name AND o.match_address = s.match_address
       AND o.archived IS false LIMIT 1),
    CASE WHEN {_NAMES_A_PERSON} THEN {_BY_EMAIL} END
)
"""  # noqa: S608 (built from constants)
# Staged rows a single edit would refuse: a retired district or need given to an
# organisation that does not have it (a new one, or a matched one without it: a retired
# entry is kept where it is, not given anew, see vocab.district_by_name), a kind that
# cannot own premises for a matched organisation that owns some (see
# organisations.check_owner_kind), and an address erased on request (the person's or the
# organisation's: a row has one email; see suppressions.py).
_REFUSED = f"""
WITH staged AS MATERIALIZED (
    SELECT s.line, s.kind, s.district, s.needs, s.email, {_MATCH} AS match_id
    FROM import_rows s WHERE s.import_id = :import_id
)
SELECT s.line, 'district' AS field, s.district AS name
FROM staged s JOIN districts d ON d.name = s.district AND NOT d.active
WHERE NOT EXISTS (
    SELECT 1 FROM organisations o WHERE o.id = s.match_id AND o.district_id = d.id
)
UNION ALL
SELECT s.line, 'needs', n.label
FROM staged s, unnest(s.needs) AS k(key) JOIN needs n ON n.key = k.key AND NOT n.active
WHERE NOT EXISTS (
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
_RETIRED = "{name!r} is retired: kept where it is, not given anew."
_REFUSALS = {
    "district": _RETIRED,
    "needs": _RETIRED,
    "kind": "{name!r} owns premises, and premises belong to a landlord or a housing company.",
    "email": IMPORT_REFUSAL,
}


_PLAN = f"""
WITH staged AS MATERIALIZED (
    SELECT s.line, s.email, s.match_name, s.match_address, {_NAMES_A_PERSON} AS person,
        {_MATCH} AS match_id
    FROM import_rows s
    WHERE s.import_id = :import_id
)
SELECT line, match_id,
    match_id IS NULL AND (
        line > min(line) OVER (PARTITION BY match_name, match_address)
        OR (NOT person AND email IS NOT NULL AND line > min(line) OVER (PARTITION BY email))
    ) AS repeated
FROM staged
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
        created, updated, unchanged, repeated = _apply(session, record, actor, progress)
    except (Invalid, Conflict) as exc:
        session.rollback()
        _fail(session, import_id, exc.extensions.get("errors") or {"import": [exc.detail]})
        raise
    _unstage(session, import_id)
    record.status = "committed"
    record.processed_rows = record.total_rows
    record.created_count = created
    record.updated_count = updated
    record.skipped_count = unchanged + repeated
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
_INSERT_ORGANISATIONS = f"""
INSERT INTO organisations (
    id, {", ".join(_ORGANISATION_COLUMNS)}, district_id, archived, version, created_at,
    updated_at, search_text, search_vector, name_vector, match_name, match_address, match_phone
)
SELECT p.new_id, {", ".join(_SNAPSHOT_SQL[c] for c in _ORGANISATION_COLUMNS)},
    (SELECT d.id FROM districts d WHERE d.name = s.district), false, 1, :now, :now,
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


# The person of a row that repeats an earlier one (a second contact at the same company,
# as Outlook exports them) joins the organisation the earlier row created or matched.
_PERSON_ORGANISATIONS = f"""
UPDATE import_plan p SET person_org = {_MATCH}
FROM import_rows s
WHERE s.import_id = :import_id AND s.line = p.line AND p.repeated AND {_NAMES_A_PERSON}
"""  # noqa: S608 (built from constants)

_LOCK_MATCHED = """
SELECT 1 FROM organisations
WHERE id IN (SELECT match_id FROM import_plan WHERE match_id IS NOT NULL)
ORDER BY id FOR NO KEY UPDATE
"""

_FILL_PLAN = f"""
INSERT INTO import_plan (line, match_id, repeated, new_id)
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


def _apply(
    session: Session, record: Import, actor: str, progress: Progress | None
) -> tuple[int, int, int, int]:
    """(created, updated, unchanged, repeated): new organisations set-based, the others
    one by one through the use cases."""
    params: dict[str, Any] = {"import_id": record.id, "actor": actor, "now": utcnow()}
    # Memory for this transaction's sorts and its snapshots of the new rows, which would
    # otherwise go through temporary files (the default is 4 MB).
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    session.execute(
        text(
            "CREATE TEMP TABLE import_plan"
            " (line integer PRIMARY KEY, match_id uuid, repeated boolean, new_id uuid,"
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
    if matched:  # (a file imported again): rows that would change nothing are left alone
        # Locked first, in id order as every edit locks them, so that what "would change
        # nothing" compares with stays as it is until the commit.
        session.execute(text(_LOCK_MATCHED))
        unchanged = session.execute(text(_MARK_UNCHANGED), params).rowcount  # type: ignore[attr-defined]
    if repeated:
        session.execute(text(_PERSON_ORGANISATIONS), params)
    # Matched rows and rows with a person: one by one, as single edits.
    plan = _PLAN_TABLE
    others = session.execute(
        select(ImportRow, plan.c.match_id, plan.c.new_id, plan.c.person_org)
        .join(plan, plan.c.line == ImportRow.line)
        .where(ImportRow.import_id == record.id)
        .where(
            or_(
                and_(plan.c.match_id.is_not(None), plan.c.unchanged.is_(False)),
                and_(
                    plan.c.repeated.is_(False),
                    or_(ImportRow.first_name.is_not(None), ImportRow.last_name.is_not(None)),
                ),
                plan.c.person_org.is_not(None),
            )
        )
        .order_by(ImportRow.line)
    ).all()
    start = created + repeated - len([row for row in others if row.person_org is not None])
    # The organisations to update, locked in id order as every edit locks them (a PATCH at
    # the same time waits, or this import waits for it).
    matched_orgs = organisations.lock_organisations(
        session, {row.match_id for row in others if row.match_id is not None}
    )
    for done, (row, match_id, new_id, person_org) in enumerate(others, start + 1):
        if match_id is not None:
            org = matched_orgs[match_id]
            values = {c: getattr(row, c) for c in VALUE_COLUMNS if getattr(row, c) is not None}
            if row.first_name or row.last_name:  # the email is the person's (see _SAME)
                values.pop("email", None)
            if organisations.change(session, org, values, actor=actor):
                updated += 1
            else:
                unchanged += 1
        _add_person(session, row, person_org or match_id or new_id, actor)
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    return created, updated, unchanged, repeated


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


def _add_person(session: Session, row: ImportRow, organisation_id: uuid.UUID, actor: str) -> None:
    """The row's person, with a role at the organisation, unless they are there already."""
    first = row.first_name or ""
    last = row.last_name or ""
    if not (first or last):
        return
    email = row.email
    at_org = select(Role.person_id).where(Role.organisation_id == organisation_id)
    known = session.scalar(
        select(Person.id).where(
            Person.id.in_(at_org),
            (Person.email == email) if email else (Person.first_name == first),
            Person.last_name == last,
        )
    )
    if known is not None:
        return
    people.add_person(
        session,
        {
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": row.person_phone or row.phone,
            "roles": [{"organisation_id": organisation_id, "role": _role_of(row.job_title)}],
        },
        actor=actor,
    )


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
    pattern = re.compile(
        rf"(?<![\w.!#$%&'*+/=?^`{{|}}~-]){re.escape(address)}(?![\w-]|\.\w)", re.IGNORECASE
    )
    found = []
    for import_id in session.scalars(select(Import.id).order_by(Import.id)).all():
        content = session.scalar(select(Import.content).where(Import.id == import_id))
        if content is not None and pattern.search(decode(content).text):
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
