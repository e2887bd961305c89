"""Automated newsletters: a digest of the upcoming published trainings (read from the visits
service over HTTP), sent on the n-th weekday of each month; a month with nothing new is
skipped, and a period is never sent twice (unique key: schedule + period)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import get_or_not_found
from shared.errors import Conflict, Invalid
from shared.http import ServiceClient
from shared.settings import Settings

from . import campaigns
from .models import Campaign, DigestRun, DigestSchedule

log = logging.getLogger(__name__)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So.")


def occurrence(schedule: DigestSchedule, year: int, month: int) -> datetime:
    """The n-th weekday of the month at the schedule's time, Europe/Berlin."""
    first = datetime(year, month, 1, schedule.hour, schedule.minute, tzinfo=BERLIN)
    offset = (schedule.weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (schedule.nth - 1))


def create_schedule(session: Session, **values: Any) -> DigestSchedule:
    campaigns._check_lists(session, values["list_ids"])
    schedule = DigestSchedule(**values)
    session.add(schedule)
    session.commit()
    return schedule


def list_schedules(session: Session) -> list[DigestSchedule]:
    return list(session.scalars(select(DigestSchedule).order_by(DigestSchedule.created_at)))


def get_schedule(session: Session, schedule_id: uuid.UUID) -> DigestSchedule:
    return get_or_not_found(session, DigestSchedule, schedule_id, "No such digest schedule.")


def runs_of(session: Session, schedule_id: uuid.UUID) -> list[DigestRun]:
    get_schedule(session, schedule_id)
    return list(
        session.scalars(
            select(DigestRun)
            .where(DigestRun.schedule_id == schedule_id)
            .order_by(DigestRun.created_at)
        )
    )


def fetch_trainings(settings: Settings) -> list[dict[str, Any]]:
    client = ServiceClient(
        settings.url_of("visits"), secret=settings.secret_key, caller="newsletter"
    )
    try:
        answer = client.get_json("/api/v1/public/trainings", per_page=100)
    finally:
        client.close()
    return list(answer.get("items") or [])


def _when(value: str) -> str:
    moment = datetime.fromisoformat(value).astimezone(BERLIN)
    return f"{WEEKDAYS[moment.weekday()]}, {moment:%d.%m.%Y, %H:%M} Uhr"


def compose(trainings: list[dict[str, Any]]) -> str:
    parts = [
        "Guten Tag {{ name }},",
        "",
        "diese Schulungen und Workshops stehen als Nächstes an:",
        "",
    ]
    for item in trainings:
        parts.append(f"## {item.get('title', '')}")
        where = ", ".join(x for x in (item.get("location_name"), item.get("location_address")) if x)
        parts.append(f"**{_when(item['starts_at'])}**" + (f" – {where}" if where else ""))
        parts.append("")
        if item.get("description"):
            parts.extend([str(item["description"]), ""])
        details = []
        if item.get("seats_left") is not None:
            details.append(_seats(int(item["seats_left"])))
        if item.get("signup_url"):
            details.append(f"[Jetzt anmelden]({item['signup_url']})")
        if details:
            parts.extend([" · ".join(details), ""])
    return "\n".join(parts)


def _seats(left: int) -> str:
    if left <= 0:
        return "ausgebucht, Anmeldung auf die Warteliste möglich"
    return "noch 1 Platz frei" if left == 1 else f"noch {left} Plätze frei"


def run_due(session: Session, settings: Settings, now: datetime) -> int:
    """Send the digest of every schedule whose time this month has come; returns how many."""
    local = now.astimezone(BERLIN)
    period = f"{local:%Y-%m}"
    due = []
    for schedule in list_schedules(session):
        if not schedule.active or now < occurrence(schedule, local.year, local.month):
            continue
        done = session.scalar(
            select(DigestRun.id).where(
                DigestRun.schedule_id == schedule.id, DigestRun.period == period
            )
        )
        if done is None:
            due.append(schedule.id)
    session.rollback()
    if not due:
        return 0
    trainings = fetch_trainings(settings)  # outside any transaction
    sent = 0
    for schedule_id in due:
        sent += _run_one(session, schedule_id, period, trainings, now)
    return sent


def run_now(
    session: Session, settings: Settings, schedule_id: uuid.UUID, now: datetime
) -> DigestRun:
    """This month's digest of a schedule now, whatever day it is (409 if the month has its
    digest already, sent or skipped)."""
    get_schedule(session, schedule_id)
    period = f"{now.astimezone(BERLIN):%Y-%m}"
    if _run_of(session, schedule_id, period) is not None:
        session.rollback()
        raise Conflict(f"The digest for {period} was sent or skipped already.")
    session.rollback()
    _run_one(session, schedule_id, period, fetch_trainings(settings), now)
    run = _run_of(session, schedule_id, period)
    if run is None:
        raise Conflict(f"The digest for {period} is being made right now.")
    return run


def _run_of(session: Session, schedule_id: uuid.UUID, period: str) -> DigestRun | None:
    return session.scalar(
        select(DigestRun).where(DigestRun.schedule_id == schedule_id, DigestRun.period == period)
    )


def _run_one(
    session: Session,
    schedule_id: uuid.UUID,
    period: str,
    trainings: list[dict[str, Any]],
    now: datetime,
) -> int:
    schedule = get_schedule(session, schedule_id)
    earlier: set[str] = set()
    for ids in session.scalars(
        select(DigestRun.training_ids).where(
            DigestRun.schedule_id == schedule.id, DigestRun.outcome == "sent"
        )
    ):
        earlier.update(ids)
    upcoming = [t for t in trainings if datetime.fromisoformat(t["starts_at"]) > now]
    new = [t for t in upcoming if str(t["id"]) not in earlier]
    run = DigestRun(schedule_id=schedule.id, period=period, outcome="skipped")
    session.add(run)
    campaign = None
    if new:
        campaign = Campaign(
            name=f"{schedule.name} {period}",
            subject=schedule.subject,
            preheader="Die nächsten Termine im Überblick",
            body=compose(upcoming),
            body_format="markdown",
            list_ids=list(schedule.list_ids),
            segment={},
        )
        session.add(campaign)
        session.flush()
        if campaigns.count_recipients(session, campaign) > 0:
            run.outcome = "sent"
            run.campaign_id = campaign.id
            run.training_ids = [str(t["id"]) for t in upcoming]
        else:
            session.delete(campaign)
            campaign = None
    try:
        session.commit()
    except IntegrityError:  # another run took this period first
        session.rollback()
        return 0
    if campaign is None:
        return 0
    try:
        campaigns.start_campaign(session, campaign.id)
    except Invalid:
        log.warning("digest %s for %s found nobody to send to", schedule.id, period)
        return 0
    return 1
