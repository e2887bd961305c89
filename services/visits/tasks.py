"""Visits' Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

from typing import Any

# Periodic tasks for the system's one beat scheduler.
SCHEDULE: dict[str, dict[str, Any]] = {}
