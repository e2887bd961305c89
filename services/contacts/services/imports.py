"""CSV import: preview (a dry run with per-row errors), then commit all-or-nothing or only
the valid rows, in one transaction; large files run in a worker and report progress.

Re-importing a file creates no duplicates: a row matches an organisation by id (our own
export), by email, or by folded name and address.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import func, inspect, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from shared.db import new_uuid, utcnow
from shared.errors import Conflict, Invalid
from shared.events import record_event

from ..csvfiles import Table, column_mapping, raw_row, read_table, row_values, write_csv
from ..models import (
    Change,
    District,
    Import,
    Need,
    Organisation,
    OutboxEvent,
    Person,
    Role,
    organisation_needs,
)
from ..normalise import fold_email, match_address, match_name, match_phone, slug, strip_accents
from . import organisations, people
from .history import get_or_404

MODES = ("all_or_nothing", "valid_only")
# Files with more rows than this are committed by a worker (see tasks.py).
BACKGROUND_ROWS = 2000
PREVIEW_ERRORS = 100
PROGRESS_EVERY = 500
BATCH = 1000

PERSON_LIMITS = {"first_name": 120, "last_name": 120, "person_phone": 60, "job_title": 200}

Progress = Callable[[int], None]


@dataclass
class Row:
    line: int
    values: dict[str, Any]
    person: dict[str, str]
    record_id: uuid.UUID | None = None


@dataclass
class Plan:
    valid: list[Row] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    matches: dict[int, uuid.UUID] = field(default_factory=dict)  # line -> existing id
    repeated: set[int] = field(default_factory=set)  # lines that repeat an earlier row

    @property
    def to_create(self) -> int:
        return len(self.valid) - len(self.matches) - len(self.repeated)


def _row_schema(mapping: Mapping[str, str]) -> ma.Schema:
    """The organisation schema, limited to the fields the file has (much faster per row)."""
    from ..schemas import OrganisationInSchema

    fields = set(OrganisationInSchema().fields)
    wanted = set(mapping.values()) | {"kind", "name", "house_number"}  # split off the street
    return OrganisationInSchema(only=wanted & fields)


def _fold(text: str) -> str:
    return " ".join(strip_accents(text).split())


class _Vocabulary:
    def __init__(self, session: Session) -> None:
        self.districts = {_fold(d.name): d.name for d in session.scalars(select(District))}
        self.needs: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        for need in session.scalars(select(Need)):
            self.labels[need.key] = need.label
            self.needs[need.key] = need.key
            self.needs[_fold(need.label)] = need.key
            self.needs[slug(need.label)] = need.key

    def resolve(self, values: dict[str, Any], errors: dict[str, list[str]]) -> None:
        if "district" in values:
            name = self.districts.get(_fold(values["district"]))
            if name is None:
                errors["district"] = [f"Unknown district {values['district']!r}."]
            values["district"] = name
        if "needs" in values:
            keys = [self.needs.get(_fold(n)) or self.needs.get(n) for n in values["needs"]]
            unknown = [n for n, key in zip(values["needs"], keys, strict=True) if key is None]
            if unknown:
                errors["needs"] = [f"Unknown needs: {', '.join(unknown)}."]
            # Unique and in label order, as an organisation lists them.
            found = {key for key in keys if key}
            values["needs"] = sorted(found, key=self.labels.__getitem__)


def _validate(session: Session, table: Table, mapping: Mapping[str, str]) -> Plan:
    plan = Plan()
    schema = _row_schema(mapping)
    vocabulary = _Vocabulary(session)
    for line, cells in table.rows:
        values = row_values(table.headers, cells, mapping)
        person: dict[str, str] = {
            key: values.pop(key)
            for key in ("first_name", "last_name", "person_phone", "job_title")
            if key in values
        }
        if "name" not in values and (person.get("first_name") or person.get("last_name")):
            values["name"] = f"{person.get('first_name', '')} {person.get('last_name', '')}".strip()
        values.setdefault("kind", "business")
        record_id = values.pop("id", None)
        errors: dict[str, list[str]] = {
            key: [f"Longer than {limit} characters."]
            for key, limit in PERSON_LIMITS.items()
            if len(person.get(key, "")) > limit
        }
        if "name" not in values:
            errors["name"] = ["Missing."]
        for number in ("latitude", "longitude"):
            if number in values:
                values[number] = values[number].replace(",", ".")
        vocabulary.resolve(values, errors)
        try:
            loaded = schema.load(values)
        except ma.ValidationError as exc:
            errors.update(exc.normalized_messages())
            loaded = {}
        if errors:
            plan.errors.append(
                {"line": line, "errors": errors, "values": raw_row(table.headers, cells)}
            )
            continue
        try:
            parsed_id = uuid.UUID(record_id) if record_id else None
        except ValueError:
            parsed_id = None
        plan.valid.append(Row(line, loaded, person, parsed_id))
    return plan


def _match(session: Session, plan: Plan) -> None:
    """Which rows are organisations we have already, and which repeat an earlier row."""
    by_id: set[uuid.UUID] = set()
    by_email: dict[str, uuid.UUID] = {}
    by_key: dict[tuple[str, str], uuid.UUID] = {}
    rows = session.execute(
        select(
            Organisation.id,
            Organisation.email,
            Organisation.match_name,
            Organisation.match_address,
        ).where(Organisation.archived.is_(False))
    )
    for org_id, email, name_key, address_key in rows:
        by_id.add(org_id)
        if email:
            by_email.setdefault(email, org_id)
        by_key.setdefault((name_key, address_key), org_id)
    seen: set[Any] = set()
    for row in plan.valid:
        values = row.values
        email = fold_email(values.get("email"))
        key = (
            match_name(values["name"]),
            match_address(values.get("street"), values.get("house_number"), values.get("postcode")),
        )
        found = row.record_id if row.record_id in by_id else None
        found = found or (by_email.get(email) if email else None) or by_key.get(key)
        if found is not None:
            plan.matches[row.line] = found
        elif key in seen or (email and email in seen):
            plan.repeated.add(row.line)
        seen.add(key)
        if email:
            seen.add(email)


def _mapping_of(table: Table, given: Mapping[str, str | None] | None) -> dict[str, str]:
    return column_mapping(table.headers, given or {})


def preview_import(
    session: Session,
    *,
    content: bytes,
    filename: str,
    mapping: Mapping[str, str | None] | None,
    actor: str,
) -> Import:
    """Read and check the file and say what a commit would do; nothing of the register is
    written. The import is kept (with the file) for the commit."""
    table = read_table(content)
    columns = _mapping_of(table, mapping)
    plan = _validate(session, table, columns)
    _match(session, plan)
    record = Import(
        status="previewed",
        filename=filename[:255],
        encoding=table.encoding,
        delimiter=table.delimiter,
        mapping=columns,
        content=content,
        total_rows=len(table.rows),
        valid_rows=len(plan.valid),
        created_count=plan.to_create,
        updated_count=len(plan.matches),
        skipped_count=len(plan.repeated),
        errors=plan.errors,
        created_by=actor,
    )
    session.add(record)
    session.commit()
    return record


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
    """Write a previewed import: here, or (large files, or when asked) in a worker."""
    _check_mode(mode)
    record = get_import(session, import_id)
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
        enqueue(str(record.id))
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
    # An advisory lock rather than a row lock, so that progress can be written meanwhile.
    locked = session.scalar(
        select(func.pg_try_advisory_xact_lock(zlib.crc32(f"contacts-import-{import_id}".encode())))
    )
    record = get_import(session, import_id)
    if not locked:  # another worker is at it
        session.rollback()
        return record
    if record.status not in ("previewed", "queued", "running"):
        session.rollback()
        return record
    actor = actor or record.created_by
    try:
        table = read_table(record.content)
        plan = _validate(session, table, record.mapping)
        if record.mode == "all_or_nothing" and plan.errors:
            raise Invalid({"mode": [f"{len(plan.errors)} rows are invalid."]})
        _match(session, plan)
        created, updated, unchanged = _apply(session, plan, actor, progress)
    except Invalid as exc:
        session.rollback()
        _fail(session, import_id, exc.extensions.get("errors", {}))
        raise
    record.status = "committed"
    record.total_rows = len(table.rows)
    record.valid_rows = len(plan.valid)
    record.processed_rows = len(table.rows)
    record.created_count = created
    record.updated_count = updated
    record.skipped_count = unchanged + len(plan.repeated)
    record.errors = plan.errors
    record.finished_at = utcnow()
    session.commit()
    return record


def _fail(session: Session, import_id: uuid.UUID, errors: Mapping[str, Any]) -> None:
    record = get_import(session, import_id)
    record.status = "failed"
    record.finished_at = utcnow()
    record.errors = [*record.errors, {"line": None, "errors": dict(errors), "values": {}}]
    session.commit()


def _apply(
    session: Session, plan: Plan, actor: str, progress: Progress | None
) -> tuple[int, int, int]:
    created = updated = unchanged = 0
    new_rows: list[tuple[Row, uuid.UUID]] = []
    for done, row in enumerate(plan.valid, 1):
        existing = plan.matches.get(row.line)
        if existing is not None:
            org = session.get(Organisation, existing)
            assert org is not None
            if organisations.change(session, org, row.values, actor=actor):
                updated += 1
            else:
                unchanged += 1
            _add_person(session, row, existing, actor)
        elif row.line not in plan.repeated:
            new_rows.append((row, new_uuid()))
        if len(new_rows) >= BATCH:
            created += _insert_new(session, new_rows, actor)
            new_rows = []
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    created += _insert_new(session, new_rows, actor)
    return created, updated, unchanged


def _insert_new(session: Session, rows: list[tuple[Row, uuid.UUID]], actor: str) -> int:
    """New organisations in bulk: the same columns, history and events as one by one."""
    if not rows:
        return 0
    district_ids = {name: id_ for id_, name in session.execute(select(District.id, District.name))}
    now = utcnow()
    orgs: list[dict[str, Any]] = []
    needs: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row, org_id in rows:
        values = row.values
        snap = organisations.new_snapshot(values)
        names = [f"{row.person.get('first_name', '')} {row.person.get('last_name', '')}"]
        search_text, vector, name_vector = organisations.search_fields(
            snap["name"],
            snap["legal_form"],
            snap["street"],
            snap["sector"],
            snap["city"],
            snap["district"],
            snap["tags"],
            names if row.person else [],
        )
        orgs.append(
            {
                **{key: snap[key] for key in organisations.FIELDS},
                "id": org_id,
                "district_id": district_ids.get(snap["district"]) if snap["district"] else None,
                "archived": False,
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "search_text": search_text,
                "search_vector": vector,
                "name_vector": name_vector,
                "match_name": match_name(snap["name"]),
                "match_address": match_address(
                    snap["street"], snap["house_number"], snap["postcode"]
                ),
                "match_phone": match_phone(snap["phone"]),
            }
        )
        needs.extend({"organisation_id": org_id, "need_key": key} for key in snap["needs"])
        changes.append(
            {
                "entity_type": organisations.ENTITY,
                "entity_id": str(org_id),
                "actor": actor,
                "at": now,
                "action": "created",
                "before": None,
                "after": snap,
            }
        )
        events.append(
            {
                "event_id": new_uuid(),
                "type": "contacts.organisation.created",
                "aggregate_id": str(org_id),
                "version": 1,
                "payload": organisations.event_payload(org_id, snap),
                "occurred_at": now,
            }
        )
    _copy(session, Organisation.__table__, orgs)
    _copy(session, organisation_needs, needs)
    _copy(session, Change.__table__, changes)
    last = events.pop()
    _copy(session, inspect(OutboxEvent).local_table, events)
    # The last one through record_event, which also kicks the relay after the commit.
    record_event(
        session,
        OutboxEvent,
        type=last["type"],
        aggregate_id=last["aggregate_id"],
        version=1,
        data=last["payload"],
    )
    for row, org_id in rows:
        _add_person(session, row, org_id, actor)
    return len(rows)


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


def _copy(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Rows into a table with COPY, in the session's transaction (the fast path of bulk
    loading in PostgreSQL); JSONB values are wrapped so that psycopg writes them as JSON."""
    if not rows:
        return
    columns = list(rows[0])
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSONB)}
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    Jsonb(row[c]) if c in json_columns and row[c] is not None else row[c]
                    for c in columns
                ]
            )


def _add_person(session: Session, row: Row, organisation_id: uuid.UUID, actor: str) -> None:
    """The row's person, with a role at the organisation, unless they are there already."""
    first = row.person.get("first_name", "")
    last = row.person.get("last_name", "")
    if not (first or last):
        return
    email = fold_email(row.values.get("email"))
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
            "phone": row.person.get("person_phone") or row.values.get("phone"),
            "roles": [
                {"organisation_id": organisation_id, "role": _role_of(row.person.get("job_title"))}
            ],
        },
        actor=actor,
    )


def set_progress(session: Session, import_id: uuid.UUID, processed: int) -> None:
    """Progress, written apart from the import's own transaction so that it shows."""
    session.execute(
        update(Import)
        .where(Import.id == import_id)
        .values(processed_rows=processed, status="running")
    )
    session.commit()


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
