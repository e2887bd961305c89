"""The newsletter service's app factory."""

from __future__ import annotations

from flask import Flask

from shared.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app(
        "newsletter",
        settings,
        title="Quartier CRM – Newsletter",
        description="Lists, subscribers with consent proof, campaigns and automated newsletters.",
    )
