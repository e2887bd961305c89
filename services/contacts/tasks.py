"""Contacts' Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.schedules import crontab

from shared.db import db_session, get_database
from shared.errors import DomainError

log = logging.getLogger(__name__)

# Periodic tasks for the system's one beat scheduler.
SCHEDULE: dict[str, dict[str, Any]] = {
    "contacts.purge_imports": {
        "task": "contacts.purge_imports",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 3600},
    },
}


@shared_task(name="contacts.purge_imports", ignore_result=True)
def purge_imports() -> int:
    """Delete uploads older than the retention (CONTACTS_IMPORT_RETENTION_DAYS)."""
    from .services import imports

    deleted = imports.purge_imports(db_session())
    if deleted:
        log.info("deleted %d imports older than the retention", deleted)
    return deleted


@shared_task(name="contacts.check_import", ignore_result=True, acks_late=True)
def check_import(import_id: str) -> None:
    """Check the rows of a large CSV upload (the preview); progress as for a commit."""
    from .services import imports

    key = uuid.UUID(import_id)
    try:
        imports.check_import(db_session(), key, progress=_progress(key))
    except DomainError as exc:  # deleted meanwhile
        log.warning("import %s not checked: %s", import_id, exc.detail)


@shared_task(name="contacts.run_import", ignore_result=True, acks_late=True)
def run_import(import_id: str) -> None:
    """Commit a queued CSV import; progress is written on a connection of its own."""
    from .services import imports

    key = uuid.UUID(import_id)
    progress = _progress(key, status="running")
    progress(0)
    try:
        imports.run_import(db_session(), key, progress=progress)
    except DomainError as exc:  # recorded on the import as failed
        log.warning("import %s failed: %s", import_id, exc.detail)


def _progress(import_id: uuid.UUID, status: str | None = None) -> Callable[[int], None]:
    """Writes an import's progress on a connection of its own, so that it shows."""
    from .services import imports

    database = get_database()

    def progress(done: int) -> None:
        with database.session() as session:
            imports.set_progress(session, import_id, done, status=status)

    return progress
