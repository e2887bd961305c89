"""No overbooking under concurrency: many confirmations at once for a few seats."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from services.visits import services
from services.visits.models import Mail, Registration
from shared.app import get_redis
from shared.db import get_database, utcnow
from shared.settings import Settings
from shared.testing import unique_email, wait_until

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


def _queued_mail_ids(app: Flask) -> list[list[str]]:
    """The id batches of the ``visits.send_mails`` messages waiting on the visits queue."""
    batches = []
    for raw in get_redis(app).lrange("visits", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "visits.send_mails":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            batches.append(args[0])
    return batches


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
    # The mail of each answer is committed, and its kind says where the person stands.
    with get_database(app).session() as session:
        kinds = dict(
            session.execute(
                select(Registration.id, Mail.kind)
                .join(Mail.registration)
                .where(Registration.training_id == training.id, Mail.kind != "confirm_request")
            ).all()
        )
    assert {str(rid): kind for rid, kind in kinds.items()} == {
        body["id"]: body["status"] for _, body in answers
    }
    # The mails (sign-ups and confirmations) reach the broker each once, in batches.
    with get_database(app).session() as session:
        mail_ids = {
            str(mail_id)
            for mail_id in session.scalars(
                select(Mail.id)
                .join(Mail.registration)
                .where(Registration.training_id == training.id)
            )
        }
    assert len(mail_ids) == 2 * CONFIRMATIONS

    def handed_on() -> list[list[str]]:
        batches = [b for b in _queued_mail_ids(app) if mail_ids.intersection(b)]
        return batches if sum(len(b) for b in batches) >= len(mail_ids) else []

    batches = wait_until(handed_on)
    assert sorted(m for batch in batches for m in batch) == sorted(mail_ids)
    assert len(batches) < len(mail_ids) / 2  # not one task per mail
    with app.app_context(), get_database(app).session() as session:
        view = services.get_training(session, training.id)
        assert (view.confirmed, view.waitlisted, view.seats_left) == (
            SEATS,
            CONFIRMATIONS - SEATS,
            0,
        )
