"""Newsletter's tables."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import Timestamp, new_metadata, new_uuid, utcnow
from shared.events import event_models

SUBSCRIBER_STATES = ("active", "blocklisted", "bounced")
SUBSCRIPTION_STATUSES = ("unconfirmed", "confirmed", "unsubscribed")
CONSENT_SOURCES = ("form", "training_signup", "import")
CAMPAIGN_STATES = ("draft", "scheduled", "sending", "paused", "sent", "cancelled")
BODY_FORMATS = ("markdown", "html")
# queued -> sending -> sent | retry (-> sending ...) | failed | bounced; skipped / cancelled
# when the recipient left or the campaign was cancelled before the mail went out.
DELIVERY_STATES = (
    "queued",
    "sending",
    "sent",
    "retry",
    "failed",
    "bounced",
    "skipped",
    "cancelled",
)
PENDING_DELIVERY_STATES = ("queued", "sending", "retry")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Base(DeclarativeBase):
    metadata = new_metadata()


OutboxEvent, InboxEvent = event_models(Base)


class MailingList(Base):
    """A newsletter list (Verteiler)."""

    __tablename__ = "lists"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Offered on the public subscribe form and the preferences page.
    public: Mapped[bool] = mapped_column(default=True)
    # Offered to people who ask for the newsletter when they sign up for a training.
    training_signup: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lower"),
        CheckConstraint(f"state IN {_in(SUBSCRIBER_STATES)}", name="state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    state: Mapped[str] = mapped_column(String(20), default="active")
    # The opaque part of one-click unsubscribe links; never expires.
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id"),
        CheckConstraint(f"status IN {_in(SUBSCRIPTION_STATUSES)}", name="status"),
        Index("ix_subscriptions_list_id_status", "list_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    list_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="unconfirmed")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ConsentRecord(Base):
    """The proof of a consent (Einwilligungsnachweis): who asked, when, how, the confirmation."""

    __tablename__ = "consent_records"
    __table_args__ = (CheckConstraint(f"source IN {_in(CONSENT_SOURCES)}", name="source"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    list_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list)
    source: Mapped[str] = mapped_column(String(20))
    consent_text_version: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    request_ip: Mapped[str | None] = mapped_column(String(64))
    request_user_agent: Mapped[str | None] = mapped_column(String(500))
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    confirm_ip: Mapped[str | None] = mapped_column(String(64))
    confirm_user_agent: Mapped[str | None] = mapped_column(String(500))
    # When the double-opt-in mail went out (None: still to send).
    mail_sent_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Suppression(Base):
    """Addresses that get no campaign mail: hard bounces, unsubscribe-from-all, erasure."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ErasedAddress(Base):
    """An address erased on request (Art. 17 GDPR), as the SHA-256 of the folded address
    (``shared.erasure``): staff cannot add or import it again; the person's own confirmed
    subscription (double opt-in: a fresh consent) lifts it. Not the address: the service
    recognises it when it comes again without holding it."""

    __tablename__ = "erased_addresses"
    __table_args__ = (CheckConstraint("email_sha256 ~ '^[0-9a-f]{64}$'", name="email_sha256_hex"),)

    email_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Organisation(Base):
    """Projection of contacts' organisations: what segments filter on."""

    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str | None] = mapped_column(String(40))
    district: Mapped[str | None] = mapped_column(String(200))
    needs: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list)
    archived: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(BigInteger)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(f"state IN {_in(CAMPAIGN_STATES)}", name="state"),
        CheckConstraint(f"body_format IN {_in(BODY_FORMATS)}", name="body_format"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    body_format: Mapped[str] = mapped_column(String(20), default="markdown")
    body_text: Mapped[str | None] = mapped_column(Text)
    list_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    # Optional narrowing by the organisation projection: {"districts", "kinds", "needs"}.
    segment: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="draft")
    scheduled_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Recipients are written in keyset batches; this is the last subscriber id written.
    prepared_up_to: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    prepared: Mapped[bool] = mapped_column(default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error_streak: Mapped[int] = mapped_column(Integer, default=0)
    paused_reason: Mapped[str | None] = mapped_column(String(300))
    last_progress_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Delivery(Base):
    """One mail of a campaign to one subscriber; the row is the exactly-once guard.

    An erased subscriber's rows stay for the campaign's counts, without subscriber, address,
    name, organisation or token."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        CheckConstraint(f"state IN {_in(DELIVERY_STATES)}", name="state"),
        Index("ix_deliveries_campaign_id_state_id", "campaign_id", "state", "id"),
        Index("ix_deliveries_subscriber_id_state", "subscriber_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    subscriber_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    # A snapshot for the cheap per-mail path (no joins while sending).
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    organisation: Mapped[str] = mapped_column(String(300), default="")
    token: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    # Who holds the row while it is "sending"; a worker writes "sent" only under its own claim.
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(String(500))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Bounce(Base):
    __tablename__ = "bounces"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    email: Mapped[str] = mapped_column(String(254), index=True)
    subscriber_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    hard: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(20))  # smtp | dsn | json
    received_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class DigestSchedule(Base):
    """An automated newsletter: the upcoming trainings, on the n-th weekday of each month."""

    __tablename__ = "digest_schedules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200))
    list_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday
    nth: Mapped[int] = mapped_column(Integer, default=1)  # 1..4: the n-th such weekday
    hour: Mapped[int] = mapped_column(Integer, default=9)
    minute: Mapped[int] = mapped_column(Integer, default=0)
    subject: Mapped[str] = mapped_column(String(300), default="Schulungen und Workshops")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class DigestRun(Base):
    """One period of a schedule: sent or skipped, never twice (the unique key)."""

    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("digest_schedules.id", ondelete="CASCADE")
    )
    period: Mapped[str] = mapped_column(String(20))  # e.g. "2026-12"
    outcome: Mapped[str] = mapped_column(String(20))  # sent | skipped
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    training_ids: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
