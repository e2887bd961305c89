"""The common part of every service's app factory."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.api import Blueprint, init_api, me_blueprint
from shared.auth import init_token_revocations
from shared.celery_app import celery_init_app
from shared.db import get_database, init_db
from shared.events import init_events
from shared.logs import configure_logging, init_request_ids
from shared.problems import problem, register_problem_handlers
from shared.settings import Settings

SETTINGS_KEY = "QUARTIER_SETTINGS"


def create_service_app(
    service: str, settings: Settings | None, *, title: str, description: str
) -> Flask:
    """A service app: settings, logs, database, API with problem+json errors, health checks,
    Celery, the event bus and rate limits.

    Every service has the same shape, and this wires it by that shape: ``api.BLUEPRINTS``
    (and ``api.RATE_LIMITS``, blueprint -> limit), ``models.OutboxEvent`` and
    ``models.InboxEvent``, ``events.HANDLERS``, and the Celery tasks of ``tasks``.
    """
    settings = settings or Settings.from_env(service)
    api_module = importlib.import_module(f"services.{service}.api")
    models = importlib.import_module(f"services.{service}.models")
    events = importlib.import_module(f"services.{service}.events")
    importlib.import_module(f"services.{service}.tasks")
    app = Flask(f"services.{service}")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
        RATELIMIT_ENABLED=settings.ratelimit_enabled,
        RATELIMIT_STORAGE_URI=settings.redis_url,
        RATELIMIT_SWALLOW_ERRORS=True,  # a limiter outage must not take the service down
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_KEY_PREFIX=f"quartier-{service}",
        **{SETTINGS_KEY: settings},
    )
    if settings.env != "test":
        configure_logging(service, settings.log_level, settings.log_json)
    init_request_ids(app)
    register_problem_handlers(app)
    init_db(app, settings.database_url)
    api = init_api(app, title, description)
    api.register_blueprint(me_blueprint())
    app.extensions["quartier.redis"] = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2
    )
    init_token_revocations(app, get_redis(app))
    celery = celery_init_app(app, service, settings.redis_url)
    # Registered before the limiter, so it runs after the limiter's header hook.
    app.after_request(_retry_after_only_when_refused)
    limiter = Limiter(get_remote_address, app=app)
    app.extensions["quartier.limiter"] = limiter
    rate_limits: Mapping[Blueprint, str] = getattr(api_module, "RATE_LIMITS", {})
    for blueprint, limit in rate_limits.items():
        limiter.limit(limit)(blueprint)
    for blueprint in api_module.BLUEPRINTS:
        api.register_blueprint(blueprint)
    init_events(app, service, celery, models.OutboxEvent, models.InboxEvent, events.HANDLERS)
    _health_routes(app)
    return app


def _retry_after_only_when_refused(response: Response) -> Response:
    """Flask-Limiter sends ``Retry-After`` (the window's reset) with every answer; on a
    success it would tell clients to wait. It stays on 3xx, 429 and 503, as RFC 9110 means."""
    if 200 <= response.status_code < 300:
        response.headers.pop("Retry-After", None)
    return response


def get_settings(app: Flask | None = None) -> Settings:
    return (app or current_app).config[SETTINGS_KEY]


def get_redis(app: Flask | None = None) -> redis.Redis:
    return (app or current_app).extensions["quartier.redis"]


def _health_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        checks: dict[str, Any] = {}
        try:
            get_database(app).ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {exc.__class__.__name__}"
        try:
            get_redis(app).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {exc.__class__.__name__}"
        if all(value == "ok" for value in checks.values()):
            return jsonify(status="ready", checks=checks)
        return problem(
            503,
            "Not ready: a dependency is unavailable.",
            headers={"Retry-After": "5"},
            checks=checks,
        )
