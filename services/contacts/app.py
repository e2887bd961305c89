"""The contacts service's app factory."""

from __future__ import annotations

from flask import Flask

from shared.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app(
        "contacts",
        settings,
        title="Quartier CRM – Contacts",
        description="Organisations, people, premises, needs and tags; staff users and tokens.",
    )
