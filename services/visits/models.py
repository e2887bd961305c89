"""Visits' tables: local projections of contacts, outreach visits with follow-ups, trainings
with their registrations, and the outgoing mails (rows with states, driven by tasks)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, object_session, relationship

from shared.db import Timestamp, new_metadata, new_uuid, utcnow
from shared.events import event_models


class Base(DeclarativeBase):
    metadata = new_metadata()


OutboxEvent, InboxEvent = event_models(Base)

CHANNELS = ("on_site", "phone", "email", "event")
TRAINING_STATUSES = ("draft", "published", "cancelled", "done")
REGISTRATION_STATUSES = ("pending", "confirmed", "waitlisted", "cancelled", "expired")
MAIL_STATUSES = ("queued", "sent", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# Projections of contacts' events: only the fields visits reads (tolerant reader).


class Organisation(Base):
    """A projection of a contacts organisation (Organisation, Betrieb)."""

    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str | None] = mapped_column(String(40))
    district: Mapped[str | None] = mapped_column(String(120), index=True)
    street: Mapped[str | None] = mapped_column(String(200))
    house_number: Mapped[str | None] = mapped_column(String(20))
    postcode: Mapped[str | None] = mapped_column(String(10))
    city: Mapped[str | None] = mapped_column(String(120))
    needs: Mapped[list[str]] = mapped_column(JSONB, default=list)
    archived: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_organisations_lower_name", text("lower(name)")),)


class Need(Base):
    """A projection of contacts' needs vocabulary (Bedarf)."""

    __tablename__ = "needs"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(BigInteger)


# Outreach visits (Unternehmensbesuche) and follow-ups (Wiedervorlagen).


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (CheckConstraint(_in("channel", CHANNELS), name="channel"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    staff_subject: Mapped[str] = mapped_column(String(120))
    staff_email: Mapped[str | None] = mapped_column(String(254))
    channel: Mapped[str] = mapped_column(String(20))
    topics: Mapped[list[str]] = mapped_column(JSONB, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    referral: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)

    organisation: Mapped[Organisation] = relationship(lazy="joined", innerjoin=True)
    follow_ups: Mapped[list[FollowUp]] = relationship(
        back_populates="visit",
        order_by="FollowUp.due_on",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class FollowUp(Base):
    __tablename__ = "follow_ups"
    __table_args__ = (Index("ix_follow_ups_open", "assignee", "due_on", "done"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    visit_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), index=True
    )
    what: Mapped[str] = mapped_column(Text)
    due_on: Mapped[date | None] = mapped_column(Date)
    assignee: Mapped[str] = mapped_column(String(254))
    done: Mapped[bool] = mapped_column(default=False)
    done_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    visit: Mapped[Visit] = relationship(back_populates="follow_ups")

    def mark(self, done: bool) -> None:
        if done and not self.done:
            self.done_at = utcnow()
        elif not done:
            self.done_at = None
        self.done = done


# Trainings (Schulungen) and registrations (Anmeldungen).


class Training(Base):
    __tablename__ = "trainings"
    __table_args__ = (
        CheckConstraint(_in("status", TRAINING_STATUSES), name="status"),
        CheckConstraint("capacity >= 0", name="capacity"),
        CheckConstraint("waitlist_limit >= 0", name="waitlist_limit"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    topic: Mapped[str | None] = mapped_column(String(80))
    starts_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    ends_at: Mapped[datetime] = mapped_column(Timestamp)
    location_name: Mapped[str] = mapped_column(String(200), default="")
    location_address: Mapped[str] = mapped_column(String(300), default="")
    trainer: Mapped[str] = mapped_column(String(200), default="")
    capacity: Mapped[int] = mapped_column(Integer)
    # How many may wait for a seat; None: no limit. Seats and waitlist taken: "ausgebucht".
    waitlist_limit: Mapped[int | None] = mapped_column(Integer)
    signup_deadline: Mapped[datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # RFC 5545 SEQUENCE: raised when time or place change and on cancellation.
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    reminders_sent_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Registration(Base):
    """A sign-up. One whose address was erased on request (Art. 17 GDPR) stays, for the
    training's counts, with no name, address, phone, IP or browser."""

    __tablename__ = "registrations"
    __table_args__ = (
        CheckConstraint(_in("status", REGISTRATION_STATUSES), name="status"),
        CheckConstraint("email = lower(email)", name="email_lower"),
        UniqueConstraint("training_id", "email"),
        Index("ix_registrations_training_status", "training_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    training_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trainings.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    organisation_name: Mapped[str | None] = mapped_column(String(300))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    newsletter: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # When the current pending period began; a re-sent link starts it again.
    pending_since: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    waitlisted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attended: Mapped[bool | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    training: Mapped[Training] = relationship(lazy="joined", innerjoin=True)

    def remember_position(self, position: int) -> None:
        """Keep a position the caller just computed under the training's lock."""
        self.__dict__["_waitlist_position"] = position

    @property
    def waitlist_position(self) -> int | None:
        """1 for the first on the waitlist; None when not waitlisted."""
        if self.status == "waitlisted" and "_waitlist_position" in self.__dict__:
            return int(self.__dict__["_waitlist_position"])
        session = object_session(self)
        if self.status != "waitlisted" or self.waitlisted_at is None or session is None:
            return None
        ahead = session.scalar(
            select(func.count())
            .select_from(Registration)
            .where(
                Registration.training_id == self.training_id,
                Registration.status == "waitlisted",
                or_(
                    Registration.waitlisted_at < self.waitlisted_at,
                    and_(
                        Registration.waitlisted_at == self.waitlisted_at,
                        Registration.id < self.id,
                    ),
                ),
            )
        )
        return (ahead or 0) + 1


class Mail(Base):
    """An outgoing mail as a row with a state (pretix's pattern): written in the same
    transaction as the change it tells about, sent by an idempotent task."""

    __tablename__ = "mails"
    __table_args__ = (
        CheckConstraint(_in("status", MAIL_STATUSES), name="status"),
        Index("ix_mails_queued", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(40))
    registration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registrations.id"), index=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)

    registration: Mapped[Registration] = relationship(lazy="joined", innerjoin=True)
