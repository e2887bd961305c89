"""The visits service's app factory."""

from __future__ import annotations

from flask import Flask

from shared.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app(
        "visits",
        settings,
        title="Quartier CRM – Visits",
        description="Outreach visits and follow-ups; trainings, registrations and calendar files.",
    )
