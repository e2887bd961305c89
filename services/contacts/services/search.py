"""One search over organisations (names, streets, sector, tags, people) and people, as a
German user types it; folded by the application, matched by PostgreSQL full-text search."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    Float,
    Integer,
    Select,
    String,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY

from shared.db import Database

from ..models import Organisation, Person
from ..normalise import tsquery


@dataclass(frozen=True)
class Hit:
    type: str
    id: uuid.UUID
    label: str
    detail: str
    rank: float


# A broad prefix ("m", "gross klein") can match much of the register; ranking every match
# would cost as much as a scan. So at most this many matches (or the page asked for, if it
# is longer) are ranked: first those in names, then (if there are fewer in names) the
# others. Typing one more letter narrows the matches as usual.
CANDIDATES = 50
# Pages of the table tried before the index (about 3,300 organisations, 1 to 2 ms when
# none matches): words that match more than about one record in 60 fill the candidates
# there, where the index would have read all their matches (a prefix such as "str" has
# tens of thousands).
PROBE_PAGES = 300


# With a LIMIT, PostgreSQL prefers scanning the table for a word it thinks common, and
# that is slow whenever the word is rarer than it thinks; the GIN indexes (and the probe
# below) are the right way for every query here. A search runs on connections of its own
# with this setting, so no other query is affected and no round trip sets it.
SETTINGS = {"enable_seqscan": "off"}


def search(
    database: Database, query: str, *, limit: int = 20, include_archived: bool = False
) -> list[Hit]:
    text = tsquery(query)
    if text is None:
        return []
    parameters = {"q": text, "limit": limit, "candidates": max(limit, CANDIDATES)}
    rows = database.read(_statement(include_archived), parameters, **SETTINGS)
    return [Hit(row.type, row.id, row.label, row.detail, round(row.rank, 6)) for row in rows]


_SHOWN = (
    Organisation.id,
    Organisation.name,
    Organisation.street,
    Organisation.house_number,
    Organisation.postcode,
    Organisation.city,
    Organisation.search_vector,
)


def _matches(vector: Any, ts: Any, candidates: Any, conditions: list[Any], name: str) -> CTE:
    """Up to ``candidates`` matches of the vector, with what a hit shows. The GIN index reads
    every match of a word (a broad one such as "gross klein" has tens of thousands), so
    the first pages of the table are tried first (a TID range scan): a broad word fills
    the candidates there, and only a narrower one, whose matches are few, goes to the
    index."""
    matching = [vector.op("@@")(ts), *conditions]
    probe = (
        select(*_SHOWN)
        .where(literal_column("organisations.ctid") < literal_column(f"'({PROBE_PAGES},0)'::tid"))
        .where(*matching)
        .limit(candidates)
        .cte(f"{name}_probe")
    )
    filled = select(func.count()).select_from(probe).scalar_subquery() >= candidates
    indexed = select(*_SHOWN).where(*matching, ~filled).limit(candidates)
    return union_all(select(probe).where(filled), indexed).cte(name)


@functools.cache
def _statement(include_archived: bool) -> Select[Any]:
    """Built once; the query text, the limit and the number of candidates are parameters."""
    ts = bindparam("q", type_=String).cast(TSQUERY)
    limit = bindparam("limit", type_=Integer)
    candidates = bindparam("candidates", type_=Integer)
    live = [Organisation.archived.is_not(True)] if not include_archived else []
    # Names weigh most (A against B): when the names alone give enough candidates, the rest
    # is not searched (PostgreSQL runs the count once and leaves out the scans below when it
    # is false). See docs/contacts.md for what that means for very short prefixes.
    named = (
        select(*_SHOWN).where(Organisation.name_vector.op("@@")(ts), *live).limit(candidates)
    ).cte("named")
    enough = select(func.count()).select_from(named).scalar_subquery() >= candidates
    elsewhere = _matches(Organisation.search_vector, ts, candidates, [*live, ~enough], "elsewhere")
    found = union_all(
        select(named), select(elsewhere).where(elsewhere.c.id.not_in(select(named.c.id)))
    ).subquery()
    org_rank = func.ts_rank(found.c.search_vector, ts)
    orgs = select(
        literal("organisation").label("type"),
        found.c.id.label("id"),
        found.c.name.label("label"),
        func.concat_ws(
            ", ",
            func.nullif(func.concat_ws(" ", found.c.street, found.c.house_number), ""),
            func.nullif(func.concat_ws(" ", found.c.postcode, found.c.city), ""),
        ).label("detail"),
        cast(org_rank, Float).label("rank"),
    )
    person_rank = func.ts_rank(Person.search_vector, ts)
    people = select(
        literal("person").label("type"),
        Person.id.label("id"),
        func.concat_ws(" ", Person.first_name, Person.last_name).label("label"),
        cast(func.coalesce(Person.email, ""), String).label("detail"),
        cast(person_rank, Float).label("rank"),
    ).where(
        Person.id.in_(
            select(Person.id)
            .where(Person.search_vector.op("@@")(ts))
            .where(*([Person.archived.is_not(True)] if not include_archived else []))
            .limit(candidates)
        )
    )
    combined = union_all(
        orgs.order_by(org_rank.desc()).limit(limit),
        people.order_by(person_rank.desc()).limit(limit),
    ).subquery()
    return select(combined).order_by(combined.c.rank.desc(), combined.c.label).limit(limit)
