"""The periodic tasks through a real worker, and the mail task's idempotence and retries."""

from __future__ import annotations

import contextlib
import smtplib
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from services.visits import services
from services.visits.mails import MAX_ATTEMPTS, deliver_mail
from services.visits.models import Mail, Registration
from services.visits.tasks import SCHEDULE
from shared.app import get_settings
from shared.celery_app import get_celery
from shared.db import get_database, utcnow
from shared.mail import Mailer, SmtpConfig
from shared.smtp_sink import SinkHandler, start_sink
from shared.testing import auth, unique_email, wait_until

from .helpers import close_app, training_body


def _pending_registration(app: Flask, email: str, *, enqueue: bool = True) -> uuid.UUID:
    """A pending sign-up; without ``enqueue`` its mail stays a queued row only (outside an
    app context nothing is handed to the broker, as when it is down at commit time)."""
    start = utcnow() + timedelta(days=3)
    with contextlib.ExitStack() as stack:
        if enqueue:
            stack.enter_context(app.app_context())
        session = stack.enter_context(get_database(app).session())
        training = services.create_training(
            session,
            title=f"Nachfolge regeln {uuid.uuid4().hex[:6]}",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            capacity=3,
            status="published",
        )
        return services.sign_up(
            session, training_id=training.id, name="Erika Mustermann", email=email
        ).registration.id


def test_beat_schedule_names_the_periodic_tasks() -> None:
    assert {entry["task"] for entry in SCHEDULE.values()} == {
        "visits.expire_pending",
        "visits.queue_reminders",
        "visits.send_queued_mails",
    }


def test_expiry_runs_as_a_task_on_a_real_worker(visits_app: Flask, celery_worker_for: Any) -> None:
    celery_worker_for("visits")
    registration_id = _pending_registration(visits_app, unique_email())
    with get_database(visits_app).session() as session:
        session.execute(
            update(Registration)
            .where(Registration.id == registration_id)
            .values(pending_since=utcnow() - services.PENDING_TTL - timedelta(minutes=1))
        )
        session.commit()
    get_celery(visits_app).send_task("visits.expire_pending", queue="visits")

    def expired() -> bool:
        with get_database(visits_app).session() as session:
            return session.get(Registration, registration_id).status == "expired"  # type: ignore[union-attr]

    wait_until(expired)


def test_a_queued_mail_whose_enqueue_was_lost_is_sent_by_the_sweep(
    visits_app: Flask, celery_worker_for: Any, smtp_sink: SinkHandler
) -> None:
    email = unique_email()
    registration_id = _pending_registration(visits_app, email, enqueue=False)
    # As if the broker had been down at commit time: the row is old and still queued.
    with get_database(visits_app).session() as session:
        session.execute(
            update(Mail)
            .where(Mail.registration_id == registration_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
        session.commit()
    celery_worker_for("visits")
    get_celery(visits_app).send_task("visits.send_queued_mails", queue="visits")
    (mail,) = wait_until(lambda: smtp_sink.to(email))
    assert "Bitte bestätigen" in str(mail.message()["Subject"])
    with get_database(visits_app).session() as session:
        wait_until(
            lambda: (
                session.scalar(select(Mail.status).where(Mail.registration_id == registration_id))
                == "sent"
            )
        )


def test_delivery_is_idempotent_and_retries_until_it_gives_up(
    visits_app: Flask, tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    email = unique_email()
    registration_id = _pending_registration(visits_app, email)
    with get_database(visits_app).session() as session:
        mail_id = session.scalar(select(Mail.id).where(Mail.registration_id == registration_id))
    assert mail_id is not None
    settings = get_settings(visits_app)
    controller, refusing = start_sink(folder=tmp_path, responder=lambda *_: "451 4.3.0 try later")
    try:
        with visits_app.app_context(), Mailer(SmtpConfig(port=controller.port)) as mailer:
            for attempt in range(1, MAX_ATTEMPTS):
                with (
                    get_database(visits_app).session() as session,
                    pytest.raises(smtplib.SMTPDataError),
                ):
                    deliver_mail(session, mail_id, mailer=mailer, settings=settings)
                with get_database(visits_app).session() as session:
                    mail = session.get(Mail, mail_id)
                    assert mail is not None
                    assert (mail.status, mail.attempts) == ("queued", attempt)
            with get_database(visits_app).session() as session:
                assert deliver_mail(session, mail_id, mailer=mailer, settings=settings) == "failed"
    finally:
        controller.stop()
    assert refusing.messages == []
    with get_database(visits_app).session() as session:
        # A failed (or sent) mail is never sent again.
        assert deliver_mail(session, mail_id, mailer=mailer, settings=settings) == "skipped"


def test_a_mail_refused_inside_a_batch_goes_on_alone_and_arrives_once(
    make_settings: Callable[..., Any],
    visits_client: FlaskClient,
    staff_token: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batched hand-off (``visits.send_mails``): the server refuses the first attempt
    (451); the mail goes on as ``visits.send_mail`` and is sent on its own, once."""
    from celery.contrib.testing.worker import start_worker

    from services.visits import tasks
    from services.visits.app import create_app

    refused: list[str] = []

    def respond(_sender: str, recipients: list[str], _raw: bytes) -> str | None:
        if recipients[0] not in refused:
            refused.append(recipients[0])
            return "451 4.3.0 Try again later"
        return None

    controller, sink = start_sink(responder=respond)
    monkeypatch.setattr(tasks, "RETRY_SECONDS", 0.2)
    training = visits_client.post(
        "/api/v1/trainings", json=training_body(), headers=auth(staff_token("coordinator"))
    ).get_json()
    # An app of its own: this sink, and a Redis database whose queue no other worker reads.
    app = create_app(
        make_settings(
            "visits",
            smtp_url=f"smtp://127.0.0.1:{sink.port}",  # type: ignore[attr-defined]
            redis_url=make_settings("visits").redis_url.rsplit("/", 1)[0] + "/8",
        )
    )
    email = unique_email()
    try:
        with start_worker(
            get_celery(app), pool="threads", concurrency=1, perform_ping_check=False,
            queues=["visits"], shutdown_timeout=30, loglevel="WARNING",
        ):  # fmt: skip
            answer = app.test_client().post(
                f"/api/v1/public/trainings/{training['id']}/registrations",
                json={"name": "Erika Muster", "email": email},
            )
            assert answer.status_code == 202
            wait_until(lambda: sink.to(email), timeout=20)
            with get_database(app).session() as session:
                mail = session.scalars(
                    select(Mail).join(Mail.registration).where(Registration.email == email)
                ).one()
                assert (mail.status, mail.attempts) == ("sent", 2)
                assert mail.last_error and "451" in mail.last_error
    finally:
        tasks.mailers.release()  # as the worker's end does in a worker process of its own
        close_app(app)
        controller.stop()
    assert refused == [email] and len(sink.to(email)) == 1
