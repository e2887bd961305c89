"""Events newsletter publishes, and handlers for events it consumes (none yet)."""

from __future__ import annotations

from shared.events import Handler

HANDLERS: dict[str, Handler] = {}
