"""Visits' Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.schedules import crontab

from shared.app import get_settings
from shared.celery_app import WorkerLocal
from shared.db import db_session
from shared.mail import Mailer, SmtpConfig

# Periodic tasks for the system's one beat scheduler.
SCHEDULE: dict[str, dict[str, Any]] = {
    "visits.expire_pending": {
        "task": "visits.expire_pending",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "visits.queue_reminders": {
        "task": "visits.queue_reminders",
        "schedule": crontab(minute="*/30"),
        "options": {"expires": 1800},
    },
    "visits.send_queued_mails": {
        "task": "visits.send_queued_mails",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
}


# Seconds before a mail that the mail server refused is tried again (by ``send_mail``).
RETRY_SECONDS = 30


# One mailer (one SMTP connection) per worker process, made on first use, dropped when
# the process ends.
mailers: WorkerLocal[str, Mailer] = WorkerLocal(
    lambda smtp_url: Mailer(SmtpConfig.from_url(smtp_url)), Mailer.drop
)


@shared_task(
    name="visits.send_mail",
    ignore_result=True,
    bind=True,
    max_retries=4,
    default_retry_delay=RETRY_SECONDS,
)
def send_mail(self: Any, mail_id: str) -> str:
    from .mails import deliver_mail

    settings = get_settings()
    try:
        return deliver_mail(
            db_session(),
            uuid.UUID(mail_id),
            mailer=mailers(settings.smtp_url),
            settings=settings,
        )
    except OSError as exc:  # SMTP errors included: the row stays queued; try again later
        raise self.retry(exc=exc) from exc


@shared_task(name="visits.send_mails", ignore_result=True)
def send_mails(mail_ids: list[str]) -> int:
    """Send a batch of queued mails (what the API gathered in a moment); a mail whose SMTP
    attempt fails goes on alone as ``visits.send_mail``, with its retries."""
    from .mails import deliver_mail

    settings = get_settings()
    sent = 0
    for mail_id in mail_ids:
        try:
            outcome = deliver_mail(
                db_session(),
                uuid.UUID(mail_id),
                mailer=mailers(settings.smtp_url),
                settings=settings,
            )
        except OSError:  # SMTP errors included: the row stays queued
            send_mail.apply_async(args=[mail_id], countdown=RETRY_SECONDS, queue="visits")
            continue
        sent += outcome == "sent"
    return sent


@shared_task(name="visits.send_queued_mails", ignore_result=True)
def send_queued_mails() -> int:
    from .services import dispatch_mails, queued_mail_ids

    ids = queued_mail_ids(db_session(), older_than=timedelta(seconds=60))
    dispatch_mails(ids)
    return len(ids)


@shared_task(name="visits.expire_pending", ignore_result=True)
def expire_pending() -> int:
    from .services import expire_pending as expire

    return expire(db_session())


@shared_task(name="visits.queue_reminders", ignore_result=True)
def queue_reminders() -> int:
    from .services import queue_reminders as queue

    return queue(db_session())
