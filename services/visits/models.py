"""Visits' tables."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import new_metadata
from shared.events import event_models


class Base(DeclarativeBase):
    metadata = new_metadata()


OutboxEvent, InboxEvent = event_models(Base)
