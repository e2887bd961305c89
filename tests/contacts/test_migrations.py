"""Data migrations of the contacts database, run step by step on a database of their own."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from alembic import command
from sqlalchemy import Engine, text

from services.contacts.normalise import fold_email
from shared.db import new_engine
from shared.migrations import alembic_config, upgrade
from shared.testing import Engines, own_database

BEFORE_NUMBERS = "8d41c2b7e5a3"  # the revision before the premises' amounts became numbers

# History entries as the premises recorded them before, amounts as text: each shape an
# entry has (created: no before, the whole record after; updated: the changed fields;
# archived: no amount), with a rent that is null, and an organisation's entry that only
# looks alike.
OLD_ENTRIES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    (
        "premises",
        "created",
        None,
        {"street": "Am Strom", "floor_area": "85.50", "rent_per_m2": None, "notes": ""},
    ),
    (
        "premises",
        "updated",
        {"floor_area": "85.50", "rent_per_m2": None},
        {"floor_area": "92.00", "rent_per_m2": "9.75"},
    ),
    ("premises", "updated", {"rent_per_m2": "9.75"}, {"rent_per_m2": "10.00"}),
    ("premises", "updated", {"notes": ""}, {"notes": "Schaufenster"}),
    ("premises", "archived", {"archived": False}, {"archived": True}),
    ("organisation", "updated", {"floor_area": "1.00"}, {"floor_area": "2.00"}),
]
NEW_ENTRIES = [
    None,
    {"street": "Am Strom", "floor_area": 85.5, "rent_per_m2": None, "notes": ""},
    {"floor_area": 85.5, "rent_per_m2": None},
    {"floor_area": 92.0, "rent_per_m2": 9.75},
    {"rent_per_m2": 9.75},
    {"rent_per_m2": 10.0},
    {"notes": ""},
    {"notes": "Schaufenster"},
    {"archived": False},
    {"archived": True},
    {"floor_area": "1.00"},
    {"floor_area": "2.00"},
]
MANY = 2500  # entries beyond the first batch of the migration


def _entries(engine: Engine) -> list[Any]:
    """Before and after of every entry but the many, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT before, after FROM changes WHERE entity_id <> 'many' ORDER BY id")
        )
        return [side for row in rows for side in row]


def _many(engine: Engine) -> set[Any]:
    with engine.connect() as conn:
        return set(
            conn.scalars(text("SELECT after -> 'floor_area' FROM changes WHERE entity_id = 'many'"))
        )


def test_premises_history_amounts_recorded_as_text_become_numbers_and_back(
    engines: Engines,
) -> None:
    with own_database(engines, "contacts", "migrate") as url:
        upgrade("contacts", url, BEFORE_NUMBERS)
        engine = new_engine(url)
        try:
            with engine.begin() as conn:
                for entity_type, action, before, after in OLD_ENTRIES:
                    conn.execute(
                        text(
                            "INSERT INTO changes (entity_type, entity_id, actor, at, action,"
                            " before, after) VALUES (:type, 'x', 'test', now(), :action,"
                            " CAST(:before AS jsonb), CAST(:after AS jsonb))"
                        ),
                        {
                            "type": entity_type,
                            "action": action,
                            "before": None if before is None else json.dumps(before),
                            "after": json.dumps(after),
                        },
                    )
                conn.execute(
                    text(
                        "INSERT INTO changes (entity_type, entity_id, actor, at, action, before,"
                        " after) SELECT 'premises', 'many', 'test', now(), 'updated',"
                        ' \'{"floor_area": "70.00"}\', \'{"floor_area": "70.25"}\''
                        " FROM generate_series(1, :n)"
                    ),
                    {"n": MANY},
                )
            old = _entries(engine)

            upgrade("contacts", url)
            assert _entries(engine) == NEW_ENTRIES
            assert _many(engine) == {70.25}

            command.downgrade(alembic_config("contacts", url), BEFORE_NUMBERS)
            assert _entries(engine) == old  # "85.50" again, not "85.5"
            assert _many(engine) == {"70.25"}
        finally:
            engine.dispose()


BEFORE_COMPOSED = "e4a9c1f07b52"  # the revision before stored emails were composed


def test_emails_stored_decomposed_are_composed_as_the_register_compares_them(
    engines: Engines,
) -> None:
    decomposed = unicodedata.normalize("NFD", "jörg@bäckerei.example")
    with own_database(engines, "contacts", "migrate") as url:
        upgrade("contacts", url, BEFORE_COMPOSED)
        engine = new_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO people (id, first_name, last_name, email, phone, notes,"
                        " archived, version, created_at, updated_at, search_text)"
                        " VALUES (gen_random_uuid(), 'Jörg', 'Bäcker', :e, NULL, '', false, 1,"
                        " now(), now(), '')"
                    ),
                    {"e": decomposed},
                )
            upgrade("contacts", url)
            with engine.connect() as conn:
                stored = conn.scalar(text("SELECT email FROM people"))
            assert stored == fold_email(decomposed) == "jörg@bäckerei.example"
            assert stored != decomposed
        finally:
            engine.dispose()
