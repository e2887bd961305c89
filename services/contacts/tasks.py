"""Contacts' Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, shared_task
from celery.schedules import crontab

from shared.db import db_session, get_database
from shared.errors import DomainError
from shared.problems import is_dependency_down

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


# The import tasks try again while the database is unreachable (a few minutes, backing
# off); any other error, or one that outlasts the retries, is recorded on the import as
# failed, so that it is not left "checking" or "running".
IMPORT_TASK = {"ignore_result": True, "acks_late": True, "bind": True, "max_retries": 8}


@shared_task(name="contacts.check_import", **IMPORT_TASK)
def check_import(task: Task, import_id: str) -> None:
    """Check the rows of a large CSV upload (the preview); progress as for a commit."""
    from .services import imports

    key = uuid.UUID(import_id)
    with _failing_on_error(task, key):
        imports.check_import(db_session(), key, progress=_progress(key))


@shared_task(name="contacts.run_import", **IMPORT_TASK)
def run_import(task: Task, import_id: str) -> None:
    """Commit a queued CSV import; progress is written on a connection of its own."""
    from .services import imports

    key = uuid.UUID(import_id)
    progress = _progress(key, status="running")
    with _failing_on_error(task, key):
        progress(0)
        imports.run_import(db_session(), key, progress=progress)


@contextmanager
def _failing_on_error(task: Task, import_id: uuid.UUID) -> Iterator[None]:
    from .services import imports

    try:
        yield
    except DomainError as exc:  # deleted meanwhile, or recorded on the import as failed
        log.warning("import %s: %s", import_id, exc.detail)
    except Exception as exc:
        if is_dependency_down(exc) and task.request.retries < (task.max_retries or 0):
            raise task.retry(exc=exc, countdown=min(2**task.request.retries, 60)) from exc
        log.exception("import %s stopped by an unexpected error", import_id)
        imports.fail_import(db_session(), import_id)


def _progress(import_id: uuid.UUID, status: str | None = None) -> Callable[[int], None]:
    """Writes an import's progress on a connection of its own, so that it shows."""
    from .services import imports

    database = get_database()

    def progress(done: int) -> None:
        with database.session() as session:
            imports.set_progress(session, import_id, done, status=status)

    return progress
