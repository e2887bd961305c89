"""Newsletter's Celery tasks: they take ids, call one use case, and are safe to run twice."""

from __future__ import annotations

import smtplib
import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task

from shared.app import get_settings
from shared.db import db_session, utcnow

from . import campaigns, digest, services
from .delivery import DeliveryConfig

# Periodic tasks for the system's one beat scheduler.
SCHEDULE: dict[str, dict[str, Any]] = {
    "newsletter.tick": {"task": "newsletter.tick", "schedule": 15.0, "options": {"expires": 30}},
    "newsletter.check_digests": {
        "task": "newsletter.check_digests",
        "schedule": 300.0,
        "options": {"expires": 600},
    },
}


@shared_task(name="newsletter.send_confirmation", ignore_result=True, bind=True, max_retries=5)
def send_confirmation(self: Any, consent_id: str) -> bool:
    try:
        return services.send_confirmation(db_session(), get_settings(), uuid.UUID(consent_id))
    except (OSError, smtplib.SMTPException) as exc:
        raise self.retry(exc=exc, countdown=30 * (self.request.retries + 1)) from exc


@shared_task(name="newsletter.prepare_campaign", ignore_result=True)
def prepare_campaign(campaign_id: str) -> int:
    config = DeliveryConfig.from_env()
    return campaigns.prepare_campaign(db_session(), uuid.UUID(campaign_id), config.parallelism)


@shared_task(name="newsletter.send_campaign", ignore_result=True, bind=True)
def send_campaign(self: Any, campaign_id: str) -> int:
    outcome = campaigns.run_campaign(get_settings(), uuid.UUID(campaign_id))
    if outcome.retry_in is not None:
        # Short countdowns only: a long ETA outlives the broker's visibility timeout.
        self.apply_async(args=[campaign_id], countdown=min(outcome.retry_in, 60.0))
    return outcome.sent


@shared_task(name="newsletter.tick", ignore_result=True)
def tick() -> None:
    """Start due campaigns, restart stalled ones, resend lost confirmation mails."""
    config = DeliveryConfig.from_env()
    session = db_session()
    campaigns.due_campaigns(session, utcnow())
    campaigns.recover_stalled(session, timedelta(seconds=config.lease_seconds), config.parallelism)
    services.unsent_confirmations(session, timedelta(minutes=2))


@shared_task(name="newsletter.check_digests", ignore_result=True)
def check_digests() -> int:
    return digest.run_due(db_session(), get_settings(), utcnow())
