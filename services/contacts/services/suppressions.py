"""Addresses erased on request (Art. 17 GDPR) that are not to be processed again.

An erasure stores the SHA-256 of the normalised address (``normalise.fold_email``), not the
address: the import and the API recognise it when it is given again (a spreadsheet that
still lists the person, a colleague typing it in) without the register holding it. Such a
hash is pseudonymous, not anonymous (whoever has the address can compute it), which is
what a suppression needs. An admin lifts a suppression when the person consents again.
"""

from __future__ import annotations

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.erasure import email_sha256, sql_folded_sha256
from shared.errors import Conflict, NotFound

from ..models import Suppression
from ..normalise import fold_email
from .history import record_change

ENTITY = "suppression"
IMPORT_REFUSAL = "This address was erased on request (Art. 17 GDPR) and is not imported again."
API_REFUSAL = (
    "This address was erased on request (Art. 17 GDPR) and is not stored again. An admin "
    "can lift the suppression (DELETE /api/v1/privacy/suppressions) if the person consents."
)


# Whether the address in ``s.email`` (an import row, folded) is suppressed: its
# email_sha256 in SQL as shared.erasure spells it, compiled to text for the import's
# statements (which are text).
_ROW_DIGEST = sql_folded_sha256(literal_column("s.email")).compile(
    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
)
SQL_SUPPRESSED = f"""EXISTS (
    SELECT 1 FROM suppressions x
    WHERE x.email_sha256 = {_ROW_DIGEST}
)"""  # noqa: S608 (built from constants)


def address_of(email: str) -> tuple[str, str]:
    """The address as the register stores it (folded, as people's and organisations' emails
    are: in any case, without surrounding spaces, composed), and its SHA-256."""
    address = fold_email(email)
    if address is None:
        raise ValueError("an address is needed")
    return address, email_sha256(address)


def lock_address(session: Session, digest: str, *, shared: bool = False) -> None:
    """A lock on one address until the transaction ends: an erasure takes it alone, a
    change that stores the address shares it. So a person created with the address while
    it is erased is either there before the erasure looks (and erased with the others) or
    sees the suppression afterwards; never created beside it."""
    key = int.from_bytes(bytes.fromhex(digest)[:8], "big", signed=True)
    take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    session.execute(select(take(key)))


def refuse_suppressed(session: Session, email: str | None) -> None:
    """A 409 if ``email`` is a suppressed address (nothing for no address), in the caller's
    transaction, which holds the address's lock (shared) from then on."""
    address = fold_email(email)
    if address is None:
        return
    digest = email_sha256(address)
    lock_address(session, digest, shared=True)
    if find(session, digest) is not None:
        raise Conflict(API_REFUSAL, code="suppressed")


def find(session: Session, digest: str) -> Suppression | None:
    return session.scalar(select(Suppression).where(Suppression.email_sha256 == digest))


def suppress(session: Session, digest: str, *, actor: str) -> Suppression:
    """Store the suppression in the caller's transaction; an address suppressed before
    keeps its first entry (when the person first asked)."""
    inserted = session.execute(
        insert(Suppression)
        .values(email_sha256=digest, created_at=utcnow(), created_by=actor)
        .on_conflict_do_nothing(index_elements=["email_sha256"])
        .returning(Suppression.email_sha256)
    ).first()
    if inserted is not None:
        _record(session, digest, "created", actor)
    found = find(session, digest)
    assert found is not None
    return found


def lift(session: Session, email: str, *, actor: str) -> None:
    """Lift the suppression of an address (the person consents again): it may be imported
    and entered again. A 404 if it is not suppressed. It waits for an erasure of the address
    running meanwhile (which stores the suppression and reads it back), and lifts what
    that stored."""
    _, digest = address_of(email)
    lock_address(session, digest)
    deleted = session.execute(
        delete(Suppression)
        .where(Suppression.email_sha256 == digest)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not deleted:
        raise NotFound("This address is not suppressed.")
    _record(session, digest, "lifted", actor)
    session.commit()


def _record(session: Session, digest: str, action: str, actor: str) -> None:
    """Who suppressed an address, or lifted it, and when: in the change history, under the
    hash (the suppression's row goes when it is lifted)."""
    record_change(
        session,
        entity_type=ENTITY,
        entity_id=digest,
        actor=actor,
        action=action,
        before=None,
        after=None,
    )
