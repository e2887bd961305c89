"""Visits' use cases. Each takes a session and plain values and owns its transaction.

Seats are counted under a row lock on the training (``SELECT ... FOR UPDATE``, pretix's
pattern): every use case that can take or free a seat locks the training first and the
registration second, so concurrent confirmations queue up and never overbook.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy import (
    Boolean,
    String,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from shared.auth import LinkError, load_link, sign_link
from shared.db import Timestamp, get_or_not_found, page_offset, utcnow
from shared.erasure import sql_email_sha256
from shared.errors import Conflict, DomainError, Gone, Invalid, NotFound
from shared.events import get_bus

from .events import NEWSLETTER_REQUESTED
from .models import (
    FollowUp,
    Mail,
    Need,
    Organisation,
    OutboxEvent,
    Registration,
    Training,
    Visit,
)

log = logging.getLogger(__name__)

BERLIN = ZoneInfo("Europe/Berlin")

# A sign-up not confirmed within this time expires; the confirmation link lives as long.
PENDING_TTL = timedelta(hours=48)
# A cancel link works until well after any training it could belong to.
CANCEL_LINK_TTL = timedelta(days=400)
CONFIRM_PURPOSE = "visits.registration.confirm"
CANCEL_PURPOSE = "visits.registration.cancel"
NEWSLETTER_CONSENT_TEXT_VERSION = "training-signup-2026-11"

_QUEUED_MAILS = "visits.queued_mails"

TRANSITIONS: dict[str, set[str]] = {
    "draft": {"published", "cancelled"},
    "published": {"cancelled", "done"},
    "cancelled": set(),
    "done": set(),
}
ACTIVE_REGISTRATION = ("pending", "confirmed", "waitlisted")
FULLY_BOOKED = "Diese Schulung ist ausgebucht, auch die Warteliste ist voll."


def to_utc(value: datetime) -> datetime:
    """A naive time is Europe/Berlin wall time; everything is stored in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=BERLIN)
    return value.astimezone(UTC)


def berlin_day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=BERLIN).astimezone(UTC)


# Committing and dispatching mails after the commit.

# How long the ids of committed mails gather before one task carries them to the worker.
MAIL_BATCH_DELAY = 0.1
MAIL_BATCH_SIZE = 200
_BATCHER = "visits.mail_batcher"


def _commit(session: Session) -> None:
    """Commit, then hand the mails written in this transaction to the worker.

    Enqueueing happens only after the commit; if the broker is down, the periodic
    ``send_queued_mails`` picks the rows up later.
    """
    mail_ids: list[uuid.UUID] = session.info.pop(_QUEUED_MAILS, [])
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    send_soon(mail_ids)


def dispatch_mails(mail_ids: Iterable[uuid.UUID]) -> None:
    """Hand mails to the worker now: one ``visits.send_mails`` task per batch of ids."""
    if has_app_context():
        _publish_mails(current_app.extensions["celery"], list(mail_ids))


def send_soon(mail_ids: Sequence[uuid.UUID]) -> None:
    """Hand committed mails to the worker within ``MAIL_BATCH_DELAY``, batched per process.

    A request then pays for no broker round trip: one publish carries the mails of every
    request of that moment. The rows are committed first, so an id lost here (the process
    ends, the broker is down) is still sent by the periodic ``send_queued_mails``.
    """
    if not mail_ids or not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    batcher: _MailBatcher | None = app.extensions.get(_BATCHER)
    if batcher is None or batcher.pid != os.getpid():  # none yet in this (forked) process
        with _BATCHER_LOCK:
            batcher = app.extensions.get(_BATCHER)
            if batcher is None or batcher.pid != os.getpid():
                batcher = app.extensions[_BATCHER] = _MailBatcher(app.extensions["celery"])
    batcher.add(mail_ids)


_BATCHER_LOCK = threading.Lock()


class _MailBatcher:
    """The first id arms a timer; when it fires, one task takes every id gathered."""

    def __init__(self, celery: Any) -> None:
        self.pid = os.getpid()
        self.celery = celery
        self.lock = threading.Lock()
        self.pending: list[uuid.UUID] = []
        self.timer: threading.Timer | None = None
        atexit.register(self.flush)

    def add(self, mail_ids: Sequence[uuid.UUID]) -> None:
        with self.lock:
            self.pending.extend(mail_ids)
            if self.timer is None:
                self.timer = threading.Timer(MAIL_BATCH_DELAY, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            mail_ids, self.pending, self.timer = self.pending, [], None
        if mail_ids and self.pid == os.getpid():
            _publish_mails(self.celery, mail_ids)


def _publish_mails(celery: Any, mail_ids: list[uuid.UUID]) -> None:
    for start in range(0, len(mail_ids), MAIL_BATCH_SIZE):
        batch = [str(mail_id) for mail_id in mail_ids[start : start + MAIL_BATCH_SIZE]]
        try:
            celery.send_task("visits.send_mails", args=[batch], queue="visits", retry=False)
        except Exception as exc:  # the rows stay queued for the periodic sender
            log.warning("could not enqueue %d mails: %s", len(batch), exc)


def _queue_mail(session: Session, registration: Registration, kind: str, **context: Any) -> Mail:
    mail = Mail(id=uuid.uuid4(), kind=kind, registration=registration, context=context)
    session.add(mail)
    session.info.setdefault(_QUEUED_MAILS, []).append(mail.id)
    return mail


# Outreach visits and follow-ups.


def _known_organisation(session: Session, organisation_id: uuid.UUID) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None or org.archived:
        raise Invalid({"organisation_id": ["Unknown organisation."]})
    return org


def _check_topics(session: Session, topics: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return []
    known = set(session.scalars(select(Need.key).where(Need.key.in_(wanted))))
    unknown = [key for key in wanted if key not in known]
    if unknown:
        raise Invalid({"topics": [f"Unknown need: {key}." for key in unknown]})
    return wanted


def _new_follow_up(values: dict[str, Any], default_assignee: str) -> FollowUp:
    return FollowUp(
        what=values["what"],
        due_on=values.get("due_on"),
        assignee=values.get("assignee") or default_assignee,
        done=bool(values.get("done", False)),
        done_at=utcnow() if values.get("done") else None,
    )


def log_visit(
    session: Session,
    *,
    staff_subject: str,
    staff_email: str | None,
    organisation_id: uuid.UUID,
    channel: str,
    occurred_at: datetime | None = None,
    topics: Sequence[str] = (),
    summary: str = "",
    outcome: str = "",
    referral: str | None = None,
    follow_ups: Sequence[dict[str, Any]] = (),
) -> Visit:
    _known_organisation(session, organisation_id)
    author = staff_email or staff_subject
    visit = Visit(
        organisation_id=organisation_id,
        occurred_at=to_utc(occurred_at) if occurred_at else utcnow(),
        staff_subject=staff_subject,
        staff_email=staff_email,
        channel=channel,
        topics=_check_topics(session, topics),
        summary=summary,
        outcome=outcome,
        referral=referral or None,
        follow_ups=[_new_follow_up(item, author) for item in follow_ups],
    )
    session.add(visit)
    _commit(session)
    return get_visit(session, visit.id)


def quick_log(
    session: Session,
    *,
    staff_subject: str,
    staff_email: str | None,
    organisation_id: uuid.UUID,
    channel: str,
    note: str,
) -> Visit:
    """The phone-at-the-shop-door version: now, by me, one line; the rest later."""
    return log_visit(
        session,
        staff_subject=staff_subject,
        staff_email=staff_email,
        organisation_id=organisation_id,
        channel=channel,
        summary=note,
    )


def get_visit(session: Session, visit_id: uuid.UUID) -> Visit:
    return get_or_not_found(session, Visit, visit_id, "No such visit.")


def update_visit(session: Session, visit_id: uuid.UUID, **changes: Any) -> Visit:
    visit = get_visit(session, visit_id)
    if "topics" in changes:
        changes["topics"] = _check_topics(session, changes["topics"])
    if changes.get("occurred_at") is not None:
        changes["occurred_at"] = to_utc(changes["occurred_at"])
    for name, value in changes.items():
        setattr(visit, name, value)
    _commit(session)
    return visit


def add_follow_up(
    session: Session, visit_id: uuid.UUID, *, default_assignee: str, **values: Any
) -> FollowUp:
    visit = get_visit(session, visit_id)
    follow_up = _new_follow_up(values, default_assignee)
    visit.follow_ups.append(follow_up)
    _commit(session)
    return follow_up


def update_follow_up(session: Session, follow_up_id: uuid.UUID, **changes: Any) -> FollowUp:
    follow_up = get_or_not_found(session, FollowUp, follow_up_id, "No such follow-up.")
    done = changes.pop("done", None)
    if done is not None:
        follow_up.mark(done)
    for name, value in changes.items():
        setattr(follow_up, name, value)
    _commit(session)
    return follow_up


def organisation_timeline(
    session: Session, organisation_id: uuid.UUID, page: int, per_page: int
) -> tuple[list[Visit], int]:
    if session.get(Organisation, organisation_id) is None:
        raise NotFound("No such organisation.")
    where = Visit.organisation_id == organisation_id
    return _page(session, where, page, per_page)


def visits_by_district(
    session: Session,
    *,
    district: str | None,
    since: date | None,
    until: date | None,
    page: int,
    per_page: int,
) -> tuple[list[Visit], int]:
    """Visits in a district (all if None) between two Berlin days, both included."""
    conditions: list[Any] = []
    if district:
        conditions.append(Organisation.district == district)
    if since:
        conditions.append(Visit.occurred_at >= berlin_day_start(since))
    if until:
        conditions.append(Visit.occurred_at < berlin_day_start(until + timedelta(days=1)))
    if since and until and until < since:
        raise Invalid({"until": ["Must not be before 'since'."]})
    return _page(session, and_(True, *conditions), page, per_page)


def _page(session: Session, where: Any, page: int, per_page: int) -> tuple[list[Visit], int]:
    base = select(Visit).join(Visit.organisation).where(where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(
        base.order_by(Visit.occurred_at.desc(), Visit.id)
        .limit(per_page)
        .offset(page_offset(page, per_page))
    ).unique()
    return list(rows), total


def list_follow_ups(
    session: Session, *, assignee: str | None, state: str, today: date | None = None
) -> list[FollowUp]:
    """Follow-ups by state: ``open``, ``overdue`` (open and past due), ``done`` or ``all``."""
    today = today or datetime.now(BERLIN).date()
    query = select(FollowUp)
    if assignee:
        query = query.where(FollowUp.assignee == assignee)
    if state in ("open", "overdue"):
        query = query.where(FollowUp.done.is_(False))
    if state == "overdue":
        query = query.where(FollowUp.due_on < today)
    if state == "done":
        query = query.where(FollowUp.done.is_(True))
    query = query.order_by(FollowUp.due_on.asc().nulls_last(), FollowUp.created_at)
    return list(session.scalars(query))


@dataclass(frozen=True)
class AssigneeLoad:
    assignee: str
    open: int
    overdue: int


def follow_up_load(session: Session, today: date | None = None) -> list[AssigneeLoad]:
    """Open and overdue follow-ups per assignee."""
    today = today or datetime.now(BERLIN).date()
    rows = session.execute(
        select(
            FollowUp.assignee,
            func.count(),
            func.count().filter(FollowUp.due_on < today),
        )
        .where(FollowUp.done.is_(False))
        .group_by(FollowUp.assignee)
        .order_by(FollowUp.assignee)
    )
    return [AssigneeLoad(assignee, open_, overdue) for assignee, open_, overdue in rows]


# Trainings.


@dataclass
class TrainingView:
    """A training with its seat counts, for the staff and public answers."""

    training: Training
    confirmed: int
    waitlisted: int
    pending: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.training, name)

    @property
    def seats_left(self) -> int:
        if self.training.status != "published":
            return 0
        return max(0, self.training.capacity - self.confirmed)


def _counts(session: Session, training_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = session.execute(
        select(Registration.training_id, Registration.status, func.count())
        .where(Registration.training_id.in_(training_ids))
        .group_by(Registration.training_id, Registration.status)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for training_id, status, count in rows:
        counts.setdefault(training_id, {})[status] = count
    return counts


def _views(session: Session, trainings: Sequence[Training]) -> list[TrainingView]:
    counts = _counts(session, [t.id for t in trainings])
    views = []
    for training in trainings:
        by_status = counts.get(training.id, {})
        views.append(
            TrainingView(
                training,
                by_status.get("confirmed", 0),
                by_status.get("waitlisted", 0),
                by_status.get("pending", 0),
            )
        )
    return views


def _check_times(starts_at: datetime, ends_at: datetime, deadline: datetime | None) -> None:
    if ends_at <= starts_at:
        raise Invalid({"ends_at": ["Must be after starts_at."]})
    if deadline is not None and deadline > starts_at:
        raise Invalid({"signup_deadline": ["Must not be after starts_at."]})


def create_training(session: Session, **values: Any) -> TrainingView:
    for name in ("starts_at", "ends_at", "signup_deadline"):
        if values.get(name) is not None:
            values[name] = to_utc(values[name])
    _check_times(values["starts_at"], values["ends_at"], values.get("signup_deadline"))
    status = values.get("status", "draft")
    if status not in ("draft", "published"):
        raise Invalid({"status": ["A new training is draft or published."]})
    training = Training(**values)
    session.add(training)
    _commit(session)
    return get_training(session, training.id)


def get_training(session: Session, training_id: uuid.UUID) -> TrainingView:
    training = get_or_not_found(session, Training, training_id, "No such training.")
    return _views(session, [training])[0]


def list_trainings(
    session: Session, *, status: str | None, page: int, per_page: int
) -> tuple[list[TrainingView], int]:
    query = select(Training)
    if status:
        query = query.where(Training.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Training.starts_at.desc())
        .limit(per_page)
        .offset(page_offset(page, per_page))
    )
    return _views(session, list(rows)), total


def public_trainings(
    session: Session, *, page: int, per_page: int, now: datetime | None = None
) -> tuple[list[TrainingView], int]:
    now = now or utcnow()
    query = select(Training).where(Training.status == "published", Training.starts_at > now)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Training.starts_at, Training.id)
        .limit(per_page)
        .offset(page_offset(page, per_page))
    )
    return _views(session, list(rows)), total


def public_training(session: Session, training_id: uuid.UUID) -> TrainingView:
    view = get_training(session, training_id)
    if view.training.status == "draft":
        raise NotFound("Diese Schulung gibt es nicht.")
    return view


def _lock_training(session: Session, training_id: uuid.UUID) -> Training:
    training = session.scalars(
        select(Training)
        .where(Training.id == training_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if training is None:
        raise NotFound("No such training.")
    return training


def _confirmed_count(session: Session, training_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Registration)
            .where(Registration.training_id == training_id, Registration.status == "confirmed")
        )
        or 0
    )


def update_training(
    session: Session, training_id: uuid.UUID, *, now: datetime | None = None, **changes: Any
) -> TrainingView:
    now = now or utcnow()
    training = _lock_training(session, training_id)
    new_status = changes.pop("status", None)
    if changes and training.status in ("cancelled", "done"):
        raise Conflict(f"A {training.status} training cannot be changed.")
    for name in ("starts_at", "ends_at", "signup_deadline"):
        if changes.get(name) is not None:
            changes[name] = to_utc(changes[name])
    _check_times(
        changes.get("starts_at", training.starts_at),
        changes.get("ends_at", training.ends_at),
        changes.get("signup_deadline", training.signup_deadline),
    )
    if "capacity" in changes:
        confirmed = _confirmed_count(session, training.id)
        if changes["capacity"] < confirmed:
            raise Invalid(
                {"capacity": [f"{confirmed} registrations are confirmed; cancel some first."]}
            )
    moved = any(
        name in changes and changes[name] != getattr(training, name)
        for name in ("starts_at", "ends_at", "location_name", "location_address")
    )
    for name, value in changes.items():
        setattr(training, name, value)
    if moved:
        training.sequence += 1
        training.reminders_sent_at = None
    if new_status is not None and new_status != training.status:
        if new_status not in TRANSITIONS[training.status]:
            raise Conflict(f"A {training.status} training cannot become {new_status}.")
        training.status = new_status
        if new_status == "cancelled":
            training.sequence += 1
            for registration in session.scalars(
                select(Registration).where(
                    Registration.training_id == training.id,
                    Registration.status.in_(ACTIVE_REGISTRATION),
                )
            ):
                _queue_mail(session, registration, "training_cancelled")
    training.version += 1
    training.updated_at = now
    if moved and training.status == "published":
        # New time or place: the people holding a seat get the updated calendar entry.
        for registration in session.scalars(
            select(Registration).where(
                Registration.training_id == training.id, Registration.status == "confirmed"
            )
        ):
            _queue_mail(session, registration, "training_changed")
    if training.status == "published":
        _fill_from_waitlist(session, training, now)
    _commit(session)
    return get_training(session, training.id)


# Registrations.


@dataclass(frozen=True)
class SignUp:
    registration: Registration
    resent: bool


def _match_organisation(session: Session, name: str | None) -> uuid.UUID | None:
    if not name or not name.strip():
        return None
    ids = list(
        session.scalars(
            select(Organisation.id)
            .where(
                func.lower(Organisation.name) == name.strip().lower(),
                Organisation.archived.is_(False),
            )
            .limit(2)
        )
    )
    return ids[0] if len(ids) == 1 else None


def sign_up(
    session: Session,
    *,
    training_id: uuid.UUID,
    name: str,
    email: str,
    organisation_name: str | None = None,
    phone: str | None = None,
    newsletter: bool = False,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> SignUp:
    """A pending registration and a mail with the confirmation link; the same address
    again gets the link again and takes no second seat."""
    if not name.strip():
        raise Invalid({"name": ["Bitte geben Sie Ihren Namen an."]})
    for attempt in (1, 2):
        try:
            return _sign_up(
                session,
                training_id=training_id,
                name=name.strip(),
                email=email.strip().lower(),
                organisation_name=(organisation_name or "").strip() or None,
                phone=(phone or "").strip() or None,
                newsletter=newsletter,
                ip=ip,
                user_agent=(user_agent or "")[:400] or None,
                now=now or utcnow(),
            )
        except IntegrityError:
            # The same address signed up at the same moment; the second try finds it.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _check_open_for_signup(training: Training | None, now: datetime) -> Training:
    if training is None or training.status == "draft":
        raise NotFound("Diese Schulung gibt es nicht.")
    if training.status == "cancelled":
        raise Conflict("Diese Schulung wurde abgesagt.")
    if training.status == "done" or training.starts_at <= now:
        raise Conflict("Diese Schulung hat bereits begonnen oder ist vorbei.")
    if training.signup_deadline is not None and now > training.signup_deadline:
        raise Conflict("Die Anmeldefrist für diese Schulung ist abgelaufen.")
    return training


def _sign_up(session: Session, *, training_id: uuid.UUID, now: datetime, **values: Any) -> SignUp:
    training = _check_open_for_signup(session.get(Training, training_id), now)
    existing = session.scalars(
        select(Registration)
        .where(Registration.training_id == training_id, Registration.email == values["email"])
        .with_for_update(of=Registration)
    ).first()
    org_id = _match_organisation(session, values["organisation_name"])
    if existing is not None and existing.status in ("confirmed", "waitlisted"):
        # Already in: tell them again where they stand, with their cancel link.
        _queue_mail(
            session,
            existing,
            existing.status,
            position=existing.waitlist_position,
        )
        _commit(session)
        return SignUp(existing, resent=True)
    if training.waitlist_limit is not None:
        view = _views(session, [training])[0]
        if view.confirmed + view.waitlisted >= training.capacity + training.waitlist_limit:
            raise Conflict(FULLY_BOOKED)
    registration = existing or Registration(training_id=training_id, email=values["email"])
    if existing is None:
        session.add(registration)
    registration.name = values["name"]
    registration.organisation_name = values["organisation_name"]
    registration.organisation_id = org_id
    registration.phone = values["phone"]
    registration.newsletter = values["newsletter"]
    registration.ip = values["ip"]
    registration.user_agent = values["user_agent"]
    registration.status = "pending"
    registration.pending_since = now
    registration.confirmed_at = registration.waitlisted_at = registration.cancelled_at = None
    _queue_mail(session, registration, "confirm_request")
    _commit(session)
    return SignUp(registration, resent=existing is not None)


def registration_from_link(secret: str, purpose: str, token: str) -> uuid.UUID:
    """The registration a signed link names; 410 when it expired, 404 when it is not valid
    (forged, damaged, or made for the other purpose), as the newsletter's links."""
    max_age = PENDING_TTL if purpose == CONFIRM_PURPOSE else CANCEL_LINK_TTL
    try:
        payload = load_link(secret, purpose, token, max_age)
    except LinkError as exc:
        if exc.expired:
            raise Gone("Dieser Link ist abgelaufen. Bitte melden Sie sich erneut an.") from exc
        raise NotFound("Dieser Link ist ungültig.") from exc
    try:
        return uuid.UUID(str(payload["r"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise NotFound("Dieser Link ist ungültig.") from exc


def link_token(secret: str, purpose: str, registration_id: uuid.UUID) -> str:
    return sign_link(secret, purpose, {"r": str(registration_id)})


def _lock_registration(session: Session, registration_id: uuid.UUID) -> Registration:
    training_id = session.scalar(
        select(Registration.training_id).where(Registration.id == registration_id)
    )
    if training_id is None:
        raise NotFound("Diese Anmeldung gibt es nicht.")
    _lock_training(session, training_id)  # first the training: the order every seat change takes
    registration = session.scalars(
        select(Registration)
        .where(Registration.id == registration_id)
        .with_for_update(of=Registration)
        .execution_options(populate_existing=True)
    ).one()
    return registration


def _state_error(registration: Registration) -> DomainError:
    if registration.status == "expired":
        return Gone("Diese Anmeldung wurde nicht rechtzeitig bestätigt und ist verfallen.")
    if registration.status == "cancelled":
        return Conflict("Diese Anmeldung wurde bereits storniert.", status_now="cancelled")
    return Conflict("Diese Anmeldung ist bereits bestätigt.", status_now=registration.status)


def _check_confirmable(registration: Registration, now: datetime) -> None:
    training = registration.training
    if registration.status != "pending":
        raise _state_error(registration)
    if training.status == "cancelled":
        raise Conflict("Diese Schulung wurde abgesagt.")
    if training.status != "published" or training.starts_at <= now:
        raise Conflict("Diese Schulung hat bereits begonnen oder ist vorbei.")


def _check_cancellable(registration: Registration, now: datetime) -> None:
    if registration.status in ("cancelled", "expired"):
        raise _state_error(registration)
    training = registration.training
    if training.starts_at <= now and training.status != "cancelled":
        raise Conflict("Die Schulung hat bereits begonnen; eine Abmeldung ist nicht mehr möglich.")


def check_link(
    session: Session, purpose: str, registration_id: uuid.UUID, now: datetime | None = None
) -> Registration:
    """What a link would do, without doing it (the page behind a GET)."""
    now = now or utcnow()
    registration = get_registration(session, registration_id)
    if purpose == CONFIRM_PURPOSE:
        _check_confirmable(registration, now)
    else:
        _check_cancellable(registration, now)
    return registration


@dataclass(frozen=True)
class _SeatStatements:
    lock: str
    take: str
    literals: dict[str, Any]


@functools.cache
def _seat_statements(dialect: Dialect) -> _SeatStatements:
    """The two statements of a confirmation, compiled once per process.

    ``lock`` locks the training row. ``take`` then counts the seats and sets the status in
    one statement (it starts after the lock is granted, so it sees every confirmation
    committed before): confirmed while seats are free, else waitlisted while the waitlist
    has room, else nothing. The same statement writes the mail row and, for a newsletter
    tick, the outbox event, and returns the status, the time (taken under the lock, so
    that the waitlist order is the order of the lock) and how many were waitlisted before.
    It changes nothing unless the registration is still the pending one that was read
    (same ``pending_since``) and the training still takes confirmations.
    """
    trainings = Training.__table__
    registrations = Registration.__table__
    others = registrations.alias("others")
    training_id = bindparam("b_training", type_=Uuid)

    def count(status: str) -> Any:
        return (
            select(func.count())
            .select_from(others)
            .where(others.c.training_id == training_id, others.c.status == status)
            .scalar_subquery()
        )

    def of_training(column: Any) -> Any:
        return select(column).where(trainings.c.id == training_id).scalar_subquery()

    # One clock reading for the whole statement (a test may fix it with b_now).
    clock = select(
        func.coalesce(cast(bindparam("b_now"), Timestamp), func.clock_timestamp()).label("now")
    ).cte("clock")
    now = select(clock.c.now).scalar_subquery()
    seat_free = count("confirmed") < of_training(trainings.c.capacity)
    limit = of_training(trainings.c.waitlist_limit)
    taken = (
        update(Registration)
        .where(
            registrations.c.id == bindparam("b_registration", type_=Uuid),
            registrations.c.training_id == training_id,
            registrations.c.status == "pending",
            registrations.c.pending_since == bindparam("b_pending_since", type_=Timestamp),
            exists().where(
                trainings.c.id == training_id,
                trainings.c.status == "published",
                trainings.c.starts_at > now,
            ),
            or_(seat_free, limit.is_(None), count("waitlisted") < limit),
        )
        .values(
            status=case((seat_free, "confirmed"), else_="waitlisted"),
            confirmed_at=case((seat_free, now), else_=None),
            waitlisted_at=case((seat_free, None), else_=now),
        )
        .returning(
            registrations.c.status,
            func.coalesce(registrations.c.confirmed_at, registrations.c.waitlisted_at).label("at"),
            count("waitlisted").label("ahead"),
        )
        .cte("taken")
    )
    mail = insert(Mail).from_select(
        ["id", "kind", "registration_id", "context", "status", "attempts", "created_at"],
        select(
            cast(bindparam("b_mail"), Uuid),
            taken.c.status,
            cast(bindparam("b_registration"), Uuid),
            case(
                (
                    taken.c.status == "waitlisted",
                    func.jsonb_build_object(literal_column("'position'"), taken.c.ahead + 1),
                ),
                else_=cast(literal_column("'{}'"), JSONB),
            ),
            literal_column("'queued'"),
            literal_column("0"),
            taken.c.at,
        ),
    )
    event = insert(OutboxEvent).from_select(
        ["event_id", "type", "aggregate_id", "version", "payload", "occurred_at"],
        select(
            cast(bindparam("b_event"), Uuid),
            literal_column(f"'{NEWSLETTER_REQUESTED}'"),
            cast(cast(bindparam("b_registration"), Uuid), String),
            literal_column("1"),
            cast(cast(bindparam("b_payload"), Text), JSONB),
            taken.c.at,
        ).where(cast(bindparam("b_newsletter"), Boolean)),
    )
    take = select(taken.c.status, taken.c.at, taken.c.ahead).add_cte(
        mail.cte("mail"), event.cte("event")
    )
    lock = select(trainings.c.id).where(trainings.c.id == training_id).with_for_update()
    compiled_take, compiled_lock = take.compile(dialect=dialect), lock.compile(dialect=dialect)
    literals = {
        name: value
        for compiled in (compiled_take, compiled_lock)
        for name, value in compiled.params.items()
        if not name.startswith("b_")
    }
    return _SeatStatements(str(compiled_lock), str(compiled_take), literals)


def confirm_registration(
    session: Session, registration_id: uuid.UUID, *, now: datetime | None = None
) -> Registration:
    """The double opt-in click: confirmed if a seat is free, else on the waitlist.

    The registration is read and checked without a lock. Then the lock on the training,
    the count-and-set (with the mail row and the event) and the commit go to PostgreSQL
    in one pipeline (psycopg's pipeline mode): the lock is held only while the server
    runs them, never across a round trip to this process, so confirmations of one
    training queue up on the lock for a short time each and never overbook.
    """
    for _attempt in range(3):
        registration = session.scalars(
            select(Registration)
            .where(Registration.id == registration_id)
            .execution_options(populate_existing=True)
        ).first()
        if registration is None:
            raise NotFound("Diese Anmeldung gibt es nicht.")
        training = registration.training
        _check_confirmable(registration, now or utcnow())
        read_since = registration.pending_since
        mail_id = uuid.uuid4()
        row = _take_seat(
            session,
            {
                "b_registration": registration.id,
                "b_training": training.id,
                "b_pending_since": read_since,
                "b_now": now,
                "b_mail": mail_id,
                "b_event": uuid.uuid4(),
                "b_newsletter": registration.newsletter,
                "b_payload": json.dumps(_newsletter_payload(registration, training)),
            },
        )
        if row is not None:
            break
        # Nothing changed: see why, with what is committed now.
        session.refresh(registration)
        session.refresh(training)
        _check_confirmable(registration, now or utcnow())
        if registration.pending_since == read_since:
            raise Conflict(FULLY_BOOKED)
        # Signed up again in between (a new pending period): confirm that one.
    else:
        raise Conflict(FULLY_BOOKED)
    status, at, ahead = row
    set_committed_value(registration, "status", status)
    set_committed_value(registration, "confirmed_at", at if status == "confirmed" else None)
    set_committed_value(registration, "waitlisted_at", at if status == "waitlisted" else None)
    if status == "waitlisted":
        registration.remember_position(ahead + 1)
    send_soon([mail_id])
    if registration.newsletter and has_app_context():
        get_bus(current_app).kick()
    return registration


def _take_seat(session: Session, values: dict[str, Any]) -> Any:
    """Lock, count-and-set and commit in one round trip; the row, or None if nothing
    changed."""
    connection = session.connection()
    statements = _seat_statements(connection.dialect)
    params = {**statements.literals, **values}
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            driver.execute(statements.lock, params)  # type: ignore[union-attr]
            cursor = driver.execute(statements.take, params)  # type: ignore[union-attr]
            driver.commit()  # type: ignore[union-attr]
        row = cursor.fetchone()
    except BaseException:
        session.rollback()
        raise
    session.commit()  # the transaction is over; this ends the session's part of it
    return row


def _newsletter_payload(registration: Registration, training: Training) -> dict[str, Any]:
    """The tick becomes this event; the newsletter asks for its own double opt-in."""
    return {
        "email": registration.email,
        "name": registration.name,
        "organisation_name": registration.organisation_name,
        "training_id": str(training.id),
        "training_title": training.title,
        "requested_at": registration.pending_since.isoformat(),
        "ip": registration.ip,
        "user_agent": registration.user_agent,
        "consent_text_version": NEWSLETTER_CONSENT_TEXT_VERSION,
    }


def _fill_from_waitlist(session: Session, training: Training, now: datetime) -> None:
    """Promote waitlisted registrations, first come first served, while seats are free.

    The caller holds the training's lock.
    """
    if training.starts_at <= now:
        return
    free = training.capacity - _confirmed_count(session, training.id)
    if free <= 0:
        return
    for registration in session.scalars(
        select(Registration)
        .where(Registration.training_id == training.id, Registration.status == "waitlisted")
        .order_by(Registration.waitlisted_at, Registration.id)
        .limit(free)
        .with_for_update(of=Registration)
    ):
        registration.status = "confirmed"
        registration.confirmed_at = now
        _queue_mail(session, registration, "promoted")


def cancel_registration(
    session: Session, registration_id: uuid.UUID, *, now: datetime | None = None
) -> Registration:
    """Cancel by link: frees the seat, and the first on the waitlist gets it."""
    now = now or utcnow()
    registration = _lock_registration(session, registration_id)
    training = registration.training
    _check_cancellable(registration, now)
    registration.status = "cancelled"
    registration.cancelled_at = now
    _queue_mail(session, registration, "cancelled")
    session.flush()
    if training.status == "published":
        _fill_from_waitlist(session, training, now)
    _commit(session)
    return registration


def erase_address(session: Session, digest: str, *, now: datetime | None = None) -> None:
    """Erase what visits holds of an address erased on request (Art. 17 GDPR), in the
    caller's transaction.

    The sign-ups with it stay, for the trainings' counts (seats, attendance, the funders'
    reports), but lose whom they name: name, address, phone, IP and browser. One still
    running for a training to come is cancelled, as no mail can reach the person any more,
    and its seat goes to the waitlist; their mails go, sent or not. A newsletter request
    waiting in the outbox keeps nothing of them. Matching hashes every address (a whole
    read of the table: erasures are rare); doing it again finds nothing more."""
    now = now or utcnow()
    erased = sql_email_sha256(Registration.email) == digest
    training_ids = sorted(
        set(session.scalars(select(Registration.training_id).where(erased)))
    )  # the order every seat change takes its trainings' locks in
    for training_id in training_ids:
        training = _lock_training(session, training_id)
        freed = False
        for registration in session.scalars(
            select(Registration)
            .where(Registration.training_id == training_id, erased)
            .with_for_update(of=Registration)
        ):
            if registration.status in ACTIVE_REGISTRATION and training.starts_at > now:
                freed = freed or registration.status == "confirmed"
                registration.status = "cancelled"
                registration.cancelled_at = now
            registration.name = ""
            registration.email = None
            registration.phone = None
            registration.ip = None
            registration.user_agent = None
            session.execute(
                delete(Mail)
                .where(Mail.registration_id == registration.id)
                .execution_options(synchronize_session=False)
            )
        session.flush()
        if freed and training.status == "published":
            _fill_from_waitlist(session, training, now)
    session.execute(
        update(OutboxEvent)
        .where(
            OutboxEvent.type == NEWSLETTER_REQUESTED,
            sql_email_sha256(OutboxEvent.payload["email"].astext) == digest,
        )
        .values(payload={"erased": True})
        .execution_options(synchronize_session=False)
    )


def get_registration(session: Session, registration_id: uuid.UUID) -> Registration:
    return get_or_not_found(
        session, Registration, registration_id, "Diese Anmeldung gibt es nicht."
    )


def list_registrations(
    session: Session, training_id: uuid.UUID, status: str | None = None
) -> list[Registration]:
    get_training(session, training_id)
    query = select(Registration).where(Registration.training_id == training_id)
    if status:
        query = query.where(Registration.status == status)
    return list(session.scalars(query.order_by(Registration.created_at, Registration.id)))


def mark_attendance(
    session: Session, registration_id: uuid.UUID, attended: bool, now: datetime | None = None
) -> Registration:
    now = now or utcnow()
    registration = get_registration(session, registration_id)
    if registration.status != "confirmed":
        raise Conflict("Only confirmed registrations can attend.")
    if registration.training.starts_at > now:
        raise Conflict("Attendance can be marked once the training has begun.")
    registration.attended = attended
    _commit(session)
    return registration


# Periodic work.


def expire_pending(session: Session, now: datetime | None = None) -> int:
    """Pending sign-ups not confirmed in time expire (they never held a seat)."""
    now = now or utcnow()
    result = session.execute(
        update(Registration)
        .where(Registration.status == "pending", Registration.pending_since < now - PENDING_TTL)
        .values(status="expired")
    )
    _commit(session)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def queue_reminders(session: Session, now: datetime | None = None) -> int:
    """Reminder mails for the trainings of tomorrow (Berlin), once per training."""
    now = now or utcnow()
    tomorrow = now.astimezone(BERLIN).date() + timedelta(days=1)
    trainings = session.scalars(
        select(Training)
        .where(
            Training.status == "published",
            Training.reminders_sent_at.is_(None),
            Training.starts_at >= berlin_day_start(tomorrow),
            Training.starts_at < berlin_day_start(tomorrow + timedelta(days=1)),
        )
        .with_for_update(skip_locked=True)
    ).all()
    queued = 0
    for training in trainings:
        for registration in session.scalars(
            select(Registration).where(
                Registration.training_id == training.id, Registration.status == "confirmed"
            )
        ):
            _queue_mail(session, registration, "reminder")
            queued += 1
        training.reminders_sent_at = now
    _commit(session)
    return queued


def queued_mail_ids(session: Session, older_than: timedelta, limit: int = 500) -> list[uuid.UUID]:
    """Mails still queued after a while (their enqueue failed or the worker died)."""
    ids = list(
        session.scalars(
            select(Mail.id)
            .where(Mail.status == "queued", Mail.created_at < utcnow() - older_than)
            .order_by(Mail.created_at)
            .limit(limit)
        )
    )
    session.rollback()
    return ids
