"""The mails of trainings: German, multipart text + HTML from Jinja templates shipped in
the package, with the calendar file attached where it helps. Transactional only: no
advertising in any of them."""

from __future__ import annotations

import functools
import logging
import smtplib
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.mail import Mailer, address, build_message
from shared.settings import Settings

from . import services
from .calendar import training_calendar
from .models import Mail, Registration, Training

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5

SUBJECTS = {
    "confirm_request": "Bitte bestätigen Sie Ihre Anmeldung: {title}",
    "confirmed": "Anmeldung bestätigt: {title}",
    "waitlisted": "Warteliste: {title}",
    "promoted": "Ein Platz ist frei – Ihre Anmeldung ist bestätigt: {title}",
    "cancelled": "Abmeldung erhalten: {title}",
    "training_cancelled": "Abgesagt: {title}",
    "reminder": "Erinnerung: morgen findet {title} statt",
    "training_changed": "Geänderter Termin: {title}",
}
WITH_CALENDAR = {"confirmed", "promoted", "reminder", "training_cancelled", "training_changed"}

WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTHS = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)


def german_date(value: datetime) -> str:
    local = value.astimezone(services.BERLIN)
    return f"{WEEKDAYS[local.weekday()]}, {local.day}. {MONTHS[local.month - 1]} {local.year}"


def german_period(starts_at: datetime, ends_at: datetime) -> str:
    start, end = starts_at.astimezone(services.BERLIN), ends_at.astimezone(services.BERLIN)
    if start.date() == end.date():
        return f"{german_date(start)}, {start:%H:%M}–{end:%H:%M} Uhr"
    return f"{german_date(start)}, {start:%H:%M} Uhr bis {german_date(end)}, {end:%H:%M} Uhr"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("services.visits", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["period"] = lambda t: german_period(t.starts_at, t.ends_at)
    env.filters["german_date"] = german_date
    return env


def render_page(template: str, **context: Any) -> str:
    return environment().get_template(f"pages/{template}").render(**context)


def public_base(settings: Settings) -> str:
    return settings.public_url_of("visits").rstrip("/")


def mail_domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "quartier.localhost"


def ics_for(training: Training, settings: Settings) -> bytes:
    return training_calendar(
        training,
        domain=mail_domain(settings),
        organizer=settings.mail_from,
        url=f"{public_base(settings)}/api/v1/public/trainings/{training.id}",
    )


def link_urls(registration: Registration, settings: Settings) -> dict[str, str]:
    base = f"{public_base(settings)}/api/v1/public/registrations"
    confirm = services.link_token(settings.secret_key, services.CONFIRM_PURPOSE, registration.id)
    cancel = services.link_token(settings.secret_key, services.CANCEL_PURPOSE, registration.id)
    return {"confirm_url": f"{base}/{confirm}/confirm", "cancel_url": f"{base}/{cancel}/cancel"}


def build(mail: Mail, settings: Settings) -> EmailMessage:
    registration = mail.registration
    training = registration.training
    context = {
        "kind": mail.kind,
        "registration": registration,
        "training": training,
        "company": settings.company,
        "pending_hours": int(services.PENDING_TTL.total_seconds() // 3600),
        "position": mail.context.get("position"),
        "ics_url": f"{public_base(settings)}/api/v1/public/trainings/{training.id}.ics",
        **link_urls(registration, settings),
    }
    env = environment()
    text = env.get_template(f"mail/{mail.kind}.txt").render(**context)
    html = env.get_template(f"mail/{mail.kind}.html").render(**context)
    attachments = []
    if mail.kind in WITH_CALENDAR:
        method = "CANCEL" if training.status == "cancelled" else "PUBLISH"
        attachments.append(
            ("schulung.ics", f"text/calendar; method={method}", ics_for(training, settings))
        )
    return build_message(
        sender=settings.mail_from,
        to=address(registration.email or "", registration.name),
        subject=SUBJECTS[mail.kind].format(title=training.title),
        text=text,
        html=html,
        attachments=attachments,
        headers={"Auto-Submitted": "auto-generated"},
    )


def deliver_mail(
    session: Session, mail_id: uuid.UUID, *, mailer: Mailer, settings: Settings
) -> str:
    """Send one queued mail; safe to run twice (a sent mail is not sent again)."""
    mail = session.scalars(
        select(Mail).where(Mail.id == mail_id).with_for_update(skip_locked=True, of=Mail)
    ).first()
    if mail is None or mail.status != "queued":
        session.rollback()
        return "skipped"
    if mail.registration.email is None:
        # The address was erased on request: a mail queued later (an expiry) reaches no one.
        mail.status = "failed"
        mail.last_error = "address erased on request"
        session.commit()
        return "failed"
    try:
        mailer.send(build(mail, settings))
    except (smtplib.SMTPException, OSError) as exc:
        mail.attempts += 1
        mail.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
        if mail.attempts >= MAX_ATTEMPTS:
            mail.status = "failed"
        session.commit()
        if mail.status == "failed":
            log.error("mail %s failed for good: %s", mail_id, mail.last_error)
            return "failed"
        raise
    mail.status = "sent"
    mail.sent_at = utcnow()
    mail.attempts += 1
    session.commit()
    return "sent"
