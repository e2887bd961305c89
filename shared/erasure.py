"""An address erased on request (Art. 17 GDPR), as the services pass it to each other.

Contacts publishes ``contacts.address.erased`` with the SHA-256 (hex) of the folded
address (trimmed, composed as NFC, lower-cased, UTF-8), never the address: the other
services find what they hold of it by hashing their own addresses the same way, in SQL, so
that the address never travels and no service needs another's table.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column

from shared.events import Envelope

ADDRESS_ERASED = "contacts.address.erased"

_DIGEST = re.compile(r"[0-9a-f]{64}")


def email_sha256(address: str) -> str:
    """The hex SHA-256 of an address, folded as contacts folds it (``strip``, composed as
    NFC, ``lower``): an umlaut as macOS writes it (NFD) hashes as the one typed."""
    folded = unicodedata.normalize("NFC", address.strip()).lower()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def sql_email_sha256(column: Any) -> ColumnElement[str]:
    """:func:`email_sha256` of a column, in SQL (core PostgreSQL 13+, a UTF-8 database).
    Stored addresses are folded already; folding them again in SQL also finds one that was
    not (a bounce's address, one stored decomposed), and changes nothing for one that was."""
    folded = func.lower(func.normalize(func.trim(column), literal_column("NFC")))
    return sql_folded_sha256(folded)


def sql_folded_sha256(folded: Any) -> ColumnElement[str]:
    """:func:`email_sha256` of a column of addresses folded already, in SQL: the one
    spelling of the hash, for :func:`sql_email_sha256` and for SQL text (compiled)."""
    return func.encode(func.sha256(func.convert_to(folded, "UTF8")), "hex")


def erased_digest(envelope: Envelope) -> str:
    """The hash an erasure event names; a malformed one is an error (the event is retried
    and shows up in the logs) rather than an erasure that silently finds nothing."""
    digest = str(envelope["data"].get("email_sha256") or "")
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"event {envelope.get('id')}: no SHA-256 of an address")
    return digest
