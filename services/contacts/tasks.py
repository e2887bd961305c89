"""Contacts' Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import shared_task

from shared.db import db_session, get_database
from shared.errors import DomainError

log = logging.getLogger(__name__)

# Periodic tasks for the system's one beat scheduler.
SCHEDULE: dict[str, dict[str, Any]] = {}


@shared_task(name="contacts.run_import", ignore_result=True, acks_late=True)
def run_import(import_id: str) -> None:
    """Commit a queued CSV import; progress is written on a connection of its own."""
    from .services import imports

    key = uuid.UUID(import_id)
    database = get_database()

    def progress(done: int) -> None:
        with database.session() as session:
            imports.set_progress(session, key, done)

    progress(0)
    try:
        imports.run_import(db_session(), key, progress=progress)
    except DomainError as exc:  # recorded on the import as failed
        log.warning("import %s failed: %s", import_id, exc.detail)
