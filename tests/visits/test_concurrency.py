"""No overbooking under concurrency: many confirmations at once for a few seats."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from services.visits import services
from shared.db import get_database, utcnow
from shared.settings import Settings
from shared.testing import unique_email

from .helpers import close_app

CONFIRMATIONS = 100
SEATS = 5


@pytest.fixture
def isolated_app(make_settings: Callable[..., Settings]) -> Iterator[Flask]:
    """The visits app on a Redis database no worker reads: the mails stay queued."""
    from services.visits.app import create_app

    settings = make_settings("visits")
    app = create_app(settings.replace(redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7"))
    yield app
    close_app(app)


def test_many_simultaneous_confirmations_never_overbook(isolated_app: Flask) -> None:
    app = isolated_app
    start = utcnow() + timedelta(days=5)
    with app.app_context(), get_database(app).session() as session:
        training = services.create_training(
            session,
            title=f"Fachkräfte finden {uuid.uuid4().hex[:6]}",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            capacity=SEATS,
            status="published",
        )
        registration_ids = [
            services.sign_up(
                session, training_id=training.id, name="Teilnehmer", email=unique_email()
            ).registration.id
            for _ in range(CONFIRMATIONS)
        ]
    secret = app.config["SECRET_KEY"]
    paths = [
        "/api/v1/public/registrations/"
        f"{services.link_token(secret, services.CONFIRM_PURPOSE, rid)}/confirm"
        for rid in registration_ids
    ]

    def confirm(path: str) -> tuple[int, Any]:
        response = app.test_client().post(path, headers={"Accept": "application/json"})
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(confirm, paths))

    assert Counter(status for status, _ in answers) == {200: CONFIRMATIONS}
    statuses = Counter(body["status"] for _, body in answers)
    assert statuses == {"confirmed": SEATS, "waitlisted": CONFIRMATIONS - SEATS}
    positions = sorted(
        body["waitlist_position"] for _, body in answers if body["waitlist_position"]
    )
    assert positions == list(range(1, CONFIRMATIONS - SEATS + 1))
    with app.app_context(), get_database(app).session() as session:
        view = services.get_training(session, training.id)
        assert (view.confirmed, view.waitlisted, view.seats_left) == (
            SEATS,
            CONFIRMATIONS - SEATS,
            0,
        )
