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
    union,
    union_all,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

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
# would cost as much as a scan. So at most this many matches are ranked: first those in
# names, then (if there are fewer in names) the others. Typing one more letter narrows the
# matches as usual.
CANDIDATES = 100
# Pages of the table tried before the index (about 3,000 organisations; well under a
# millisecond): a word that matches more than about one record in 30 fills the candidates
# there.
PROBE_PAGES = 300


def search(
    session: Session, query: str, *, limit: int = 20, include_archived: bool = False
) -> list[Hit]:
    text = tsquery(query)
    if text is None:
        return []
    # PostgreSQL cannot estimate how many rows a prefix query matches and, with a LIMIT,
    # prefers scanning the table; the GIN indexes are the right way for every query here.
    session.execute(sql_text("SET LOCAL enable_seqscan = off"))
    rows = session.execute(_statement(include_archived), {"q": text, "limit": limit})
    return [Hit(row.type, row.id, row.label, row.detail, round(row.rank, 6)) for row in rows]


def _matches(vector: Any, ts: Any, conditions: list[Any], name: str) -> CTE:
    """Up to CANDIDATES matches of the vector. The GIN index reads every match of a word
    (a broad one such as "gross klein" has tens of thousands), so the first pages of the
    table are tried first (a TID range scan): a broad word fills the candidates there,
    and only a narrower one, whose matches are few, goes to the index."""
    matching = [vector.op("@@")(ts), *conditions]
    probe = (
        select(Organisation.id)
        .where(literal_column("organisations.ctid") < literal_column(f"'({PROBE_PAGES},0)'::tid"))
        .where(*matching)
        .limit(CANDIDATES)
        .cte(f"{name}_probe")
    )
    short = select(func.count()).select_from(probe).scalar_subquery() < CANDIDATES
    indexed = select(Organisation.id).where(*matching, short).limit(CANDIDATES)
    return union(select(probe.c.id), indexed).cte(name)


@functools.cache
def _statement(include_archived: bool) -> Select[Any]:
    """Built once; the query text and the limit are parameters."""
    ts = bindparam("q", type_=String).cast(TSQUERY)
    limit = bindparam("limit", type_=Integer)
    live = [Organisation.archived.is_not(True)] if not include_archived else []
    named = (
        select(Organisation.id)
        .where(Organisation.name_vector.op("@@")(ts), *live)
        .limit(CANDIDATES)
        .cte("named")
    )
    # Names weigh most (A against B): when the names alone give enough candidates, the rest
    # is not searched (PostgreSQL runs the count once and leaves out the scans below when it
    # is false). See docs/contacts.md for what that means for very short prefixes.
    enough = select(func.count()).select_from(named).scalar_subquery() >= CANDIDATES
    elsewhere = _matches(Organisation.search_vector, ts, [*live, ~enough], "elsewhere")
    candidates = union(select(named.c.id), select(elsewhere.c.id)).subquery()
    org_rank = func.ts_rank(Organisation.search_vector, ts)
    orgs = select(
        literal("organisation").label("type"),
        Organisation.id.label("id"),
        Organisation.name.label("label"),
        func.concat_ws(
            ", ",
            func.nullif(func.concat_ws(" ", Organisation.street, Organisation.house_number), ""),
            func.nullif(func.concat_ws(" ", Organisation.postcode, Organisation.city), ""),
        ).label("detail"),
        cast(org_rank, Float).label("rank"),
    ).where(Organisation.id.in_(select(candidates.c.id)))
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
            .limit(CANDIDATES)
        )
    )
    combined = union_all(
        orgs.order_by(org_rank.desc()).limit(limit),
        people.order_by(person_rank.desc()).limit(limit),
    ).subquery()
    return select(combined).order_by(combined.c.rank.desc(), combined.c.label).limit(limit)
