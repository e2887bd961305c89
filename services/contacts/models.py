"""Contacts' tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.auth import STAFF_ROLES
from shared.db import Timestamp, new_metadata, new_uuid, utcnow
from shared.events import event_models


class Base(DeclarativeBase):
    metadata = new_metadata()


OutboxEvent, InboxEvent = event_models(Base)


class User(Base):
    """A staff member who signs in to the staff API."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {STAFF_ROLES!r}", name="role"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(Timestamp)


ORGANISATION_KINDS = ("business", "landlord", "housing_company", "partner", "other")
ORGANISATION_STATUSES = ("prospect", "active", "closed", "moved_away")
ROLES = (
    "owner",
    "managing_director",
    "contact_person",
    "property_manager",
    "employee",
    "other",
)
PREMISES_USES = ("retail", "office", "gastronomy", "workshop", "other")
PREMISES_STATUSES = ("vacant", "let", "planned")
OWNER_KINDS = ("landlord", "housing_company")
IMPORT_STATUSES = ("checking", "previewed", "queued", "running", "committed", "failed")
# A need's key names it in the change history and in events, whose ids hold 64 characters.
NEED_KEY_LENGTH = 64


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class District(Base):
    """An area of the city (Stadtteil); a maintained list, not hard-coded."""

    __tablename__ = "districts"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    active: Mapped[bool] = mapped_column(default=True)


class Need(Base):
    """A maintained vocabulary entry (Bedarf), e.g. Digitalisierung."""

    __tablename__ = "needs"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    label: Mapped[str] = mapped_column(String(120), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)


organisation_needs = Table(
    "organisation_needs",
    Base.metadata,
    Column(
        "organisation_id",
        ForeignKey("organisations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("need_key", ForeignKey("needs.key", onupdate="CASCADE"), primary_key=True, index=True),
)


class Organisation(Base):
    """A business, landlord, housing company or partner in the register (Betrieb)."""

    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint(f"kind IN {_in(ORGANISATION_KINDS)}", name="kind"),
        CheckConstraint(f"status IN {_in(ORGANISATION_STATUSES)}", name="status"),
        CheckConstraint("length(trim(name)) > 0", name="name_not_empty"),
        Index("ix_organisations_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_organisations_name_vector", "name_vector", postgresql_using="gin"),
        Index("ix_organisations_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(300))
    legal_form: Mapped[str | None] = mapped_column(String(60))
    sector: Mapped[str | None] = mapped_column(String(200))
    wz_code: Mapped[str | None] = mapped_column(String(10))
    street: Mapped[str | None] = mapped_column(String(200))
    house_number: Mapped[str | None] = mapped_column(String(20))
    postcode: Mapped[str | None] = mapped_column(String(5))
    city: Mapped[str | None] = mapped_column(String(120))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    website: Mapped[str | None] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(60))
    employees: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="prospect", index=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(80)), default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    archived: Mapped[bool] = mapped_column(default=False, index=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Set with each new version (services/history.py), not by every UPDATE of the row.
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Written by the application (see normalise.py): folded text for search and matching.
    search_text: Mapped[str] = mapped_column(Text, default="")
    search_vector: Mapped[str | None] = mapped_column(TSVECTOR)
    # The names alone, so that matches in names are found without checking weights.
    name_vector: Mapped[str | None] = mapped_column(TSVECTOR)
    # Text: folding makes them longer than the fields they are made of (ß -> ss).
    match_name: Mapped[str] = mapped_column(Text, default="", index=True)
    match_address: Mapped[str] = mapped_column(Text, default="")
    match_phone: Mapped[str | None] = mapped_column(Text, index=True)

    district: Mapped[District | None] = relationship(lazy="joined")
    needs: Mapped[list[Need]] = relationship(
        secondary=organisation_needs, lazy="selectin", order_by=Need.label
    )
    roles: Mapped[list[Role]] = relationship(back_populates="organisation", lazy="selectin")

    # The use cases lock the row and bump the version themselves (services/history.py);
    # every UPDATE also says "AND version = <the version read>", so a change written from a
    # stale copy fails (StaleDataError, a 409) instead of repeating a version.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class Person(Base):
    """Someone with roles at one or more organisations (Ansprechpartner)."""

    __tablename__ = "people"
    __table_args__ = (
        CheckConstraint(
            "length(trim(first_name)) > 0 OR length(trim(last_name)) > 0", name="name_not_empty"
        ),
        Index("ix_people_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    first_name: Mapped[str] = mapped_column(String(120), default="")
    last_name: Mapped[str] = mapped_column(String(120), default="")
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(60))
    notes: Mapped[str] = mapped_column(Text, default="")
    archived: Mapped[bool] = mapped_column(default=False, index=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)  # as above
    search_text: Mapped[str] = mapped_column(Text, default="")
    search_vector: Mapped[str | None] = mapped_column(TSVECTOR)

    roles: Mapped[list[Role]] = relationship(
        back_populates="person", lazy="selectin", cascade="all, delete-orphan"
    )

    # Versioned as Organisation.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class Role(Base):
    """A person's role at an organisation: owner, managing director, contact person ..."""

    __tablename__ = "roles"
    __table_args__ = (
        CheckConstraint(f"role IN {_in(ROLES)}", name="role"),
        UniqueConstraint("person_id", "organisation_id", "role"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(30))

    person: Mapped[Person] = relationship(back_populates="roles")
    organisation: Mapped[Organisation] = relationship(back_populates="roles", lazy="joined")


class Premises(Base):
    """A commercial unit (Gewerbefläche): area, use, owner, tenant, vacancy."""

    __tablename__ = "premises"
    __table_args__ = (
        CheckConstraint(f"use IN {_in(PREMISES_USES)}", name="use"),
        CheckConstraint(f"status IN {_in(PREMISES_STATUSES)}", name="status"),
        CheckConstraint("floor_area > 0", name="floor_area_positive"),
        Index("ix_premises_vacancy", "status", "district_id", "use"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    street: Mapped[str] = mapped_column(String(200))
    house_number: Mapped[str | None] = mapped_column(String(20))
    postcode: Mapped[str | None] = mapped_column(String(5))
    city: Mapped[str | None] = mapped_column(String(120))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"))
    floor_area: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    use: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="vacant")
    rent_per_m2: Mapped[Decimal | None] = mapped_column(Numeric(8, 2))
    available_from: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    archived: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)  # as above

    district: Mapped[District | None] = relationship(lazy="joined")
    owner: Mapped[Organisation] = relationship(foreign_keys=[owner_id], lazy="joined")
    tenant: Mapped[Organisation | None] = relationship(foreign_keys=[tenant_id], lazy="joined")

    # Versioned as Organisation.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class Change(Base):
    """One entry of a record's change history: who, when, what (before and after)."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_entity", "entity_type", "entity_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    action: Mapped[str] = mapped_column(String(30))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Suppression(Base):
    """An address erased on request (Art. 17 GDPR) that is not to be processed again: the
    import refuses it and the API does not store it, until an admin lifts the suppression.
    Kept as the SHA-256 of the normalised address (services/suppressions.py), not as the
    address: the register can recognise it when it is given again without holding it."""

    __tablename__ = "suppressions"
    __table_args__ = (CheckConstraint("email_sha256 ~ '^[0-9a-f]{64}$'", name="email_sha256_hex"),)

    email_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(254))


class Import(Base):
    """An uploaded CSV: checked and previewed first, then committed (each in the request, or
    for large files by a worker)."""

    __tablename__ = "imports"
    __table_args__ = (CheckConstraint(f"status IN {_in(IMPORT_STATUSES)}", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    status: Mapped[str] = mapped_column(String(20), default="previewed")
    filename: Mapped[str] = mapped_column(String(255), default="")
    encoding: Mapped[str] = mapped_column(String(20))
    delimiter: Mapped[str] = mapped_column(String(1))
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    mode: Mapped[str | None] = mapped_column(String(20))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    valid_rows: Mapped[int] = mapped_column(Integer, default=0)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    # The people of the rows: new ones, and ones there already (in the register, or from an
    # earlier row) who get a role at another organisation.
    people_created_count: Mapped[int] = mapped_column(Integer, default=0)
    people_linked_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    # About the file as a whole (lines read in another encoding); a default in the database
    # too, for rows written before the column, or by a replica that does not know it yet.
    warnings: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ImportRow(Base):
    """A valid row of a previewed import, checked and folded once, ready to be written by
    set-based SQL at the commit. Unlogged (no WAL): after a database crash the table is
    empty, and the commit checks the stored file again (see services/imports.py)."""

    __tablename__ = "import_rows"
    __table_args__ = ({"prefixes": ["UNLOGGED"]},)

    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[uuid.UUID | None] = mapped_column()
    # The row's fields as the schema loaded them (NULL: not in the row).
    kind: Mapped[str | None] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(300))
    legal_form: Mapped[str | None] = mapped_column(String(60))
    sector: Mapped[str | None] = mapped_column(String(200))
    wz_code: Mapped[str | None] = mapped_column(String(10))
    street: Mapped[str | None] = mapped_column(String(200))
    house_number: Mapped[str | None] = mapped_column(String(20))
    postcode: Mapped[str | None] = mapped_column(String(5))
    city: Mapped[str | None] = mapped_column(String(120))
    district: Mapped[str | None] = mapped_column(String(120))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    website: Mapped[str | None] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(60))
    employees: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(20))
    needs: Mapped[list[str] | None] = mapped_column(ARRAY(String(80)))
    tags: Mapped[list[str] | None] = mapped_column(ARRAY(String(80)))
    notes: Mapped[str | None] = mapped_column(Text)
    # The person in the row, if any.
    first_name: Mapped[str | None] = mapped_column(String(120))
    last_name: Mapped[str | None] = mapped_column(String(120))
    person_phone: Mapped[str | None] = mapped_column(String(60))
    job_title: Mapped[str | None] = mapped_column(String(200))
    # Folded as for a new organisation (see organisations.search_fields and normalise.py).
    search_text: Mapped[str] = mapped_column(Text)
    search_vector: Mapped[str] = mapped_column(TSVECTOR)
    name_vector: Mapped[str] = mapped_column(TSVECTOR)
    match_name: Mapped[str] = mapped_column(Text)
    match_address: Mapped[str] = mapped_column(Text)
    match_phone: Mapped[str | None] = mapped_column(Text)
