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
from shared.testing import unique_email, wait_until


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
