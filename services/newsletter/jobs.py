"""Enqueue newsletter tasks by name (use cases call this after their commit)."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app

log = logging.getLogger(__name__)


def enqueue(task: str, *args: Any, countdown: float | None = None) -> None:
    """Send ``newsletter.<task>``; if the broker is down, beat's ``tick`` catches up."""
    try:
        current_app.extensions["celery"].send_task(
            f"newsletter.{task}",
            args=[str(a) for a in args],
            queue="newsletter",
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.3},
        )
    except Exception as exc:  # the state is committed; the periodic tick recovers
        log.warning("could not enqueue newsletter.%s: %s", task, exc)
