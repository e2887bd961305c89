"""Visits' payloads: In (requests), Out (responses), QueryArgs.

Times are ``shared.api.BerlinDateTime``: ISO 8601 in, one without an offset being
Europe/Berlin wall time; out in Europe/Berlin with the offset.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from shared.api import BerlinDateTime, Boolean, PageArgs
from shared.mail import has_line_break

from .models import CHANNELS, REGISTRATION_STATUSES, TRAINING_STATUSES

# Outreach visits.


class FollowUpInSchema(ma.Schema):
    what = ma.fields.String(required=True, validate=validate.Length(min=1, max=2000))
    due_on = ma.fields.Date(load_default=None, allow_none=True)
    assignee = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=254),
        metadata={"description": "Staff email; defaults to the author of the visit."},
    )
    done = Boolean(load_default=False)


class FollowUpPatchSchema(ma.Schema):
    what = ma.fields.String(validate=validate.Length(min=1, max=2000))
    due_on = ma.fields.Date(allow_none=True)
    assignee = ma.fields.String(validate=validate.Length(min=1, max=254))
    done = Boolean()


class FollowUpOutSchema(ma.Schema):
    id = ma.fields.UUID()
    visit_id = ma.fields.UUID()
    what = ma.fields.String()
    due_on = ma.fields.Date(allow_none=True)
    assignee = ma.fields.String()
    done = Boolean()
    done_at = BerlinDateTime(allow_none=True)
    organisation_id = ma.fields.Function(lambda f: str(f.visit.organisation_id))
    organisation_name = ma.fields.Function(lambda f: f.visit.organisation.name)


_TOPIC = ma.fields.String(validate=validate.Length(min=1, max=80))


class VisitInSchema(ma.Schema):
    organisation_id = ma.fields.UUID(required=True)
    occurred_at = BerlinDateTime(
        load_default=None, allow_none=True, metadata={"description": "Defaults to now."}
    )
    channel = ma.fields.String(required=True, validate=validate.OneOf(CHANNELS))
    topics = ma.fields.List(_TOPIC, load_default=list, validate=validate.Length(max=30))
    summary = ma.fields.String(load_default="", validate=validate.Length(max=20000))
    outcome = ma.fields.String(load_default="", validate=validate.Length(max=20000))
    referral = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "A partner the business was referred to, e.g. Jobcenter."},
    )
    follow_ups = ma.fields.List(
        ma.fields.Nested(FollowUpInSchema), load_default=list, validate=validate.Length(max=50)
    )


class QuickVisitInSchema(ma.Schema):
    organisation_id = ma.fields.UUID(required=True)
    channel = ma.fields.String(load_default="on_site", validate=validate.OneOf(CHANNELS))
    note = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))


class VisitPatchSchema(ma.Schema):
    occurred_at = BerlinDateTime()
    channel = ma.fields.String(validate=validate.OneOf(CHANNELS))
    topics = ma.fields.List(_TOPIC, validate=validate.Length(max=30))
    summary = ma.fields.String(validate=validate.Length(max=20000))
    outcome = ma.fields.String(validate=validate.Length(max=20000))
    referral = ma.fields.String(allow_none=True, validate=validate.Length(max=200))


class VisitOutSchema(ma.Schema):
    id = ma.fields.UUID()
    organisation_id = ma.fields.UUID()
    organisation_name = ma.fields.Function(lambda v: v.organisation.name)
    district = ma.fields.Function(lambda v: v.organisation.district)
    occurred_at = BerlinDateTime()
    staff_subject = ma.fields.String()
    staff_email = ma.fields.String(allow_none=True)
    channel = ma.fields.String()
    topics = ma.fields.List(ma.fields.String())
    summary = ma.fields.String()
    outcome = ma.fields.String()
    referral = ma.fields.String(allow_none=True)
    follow_ups = ma.fields.List(ma.fields.Nested(FollowUpOutSchema))
    created_at = BerlinDateTime()


class VisitQueryArgs(PageArgs):
    district = ma.fields.String(validate=validate.Length(min=1, max=120))
    since = ma.fields.Date(metadata={"description": "First day (Berlin), included."})
    until = ma.fields.Date(metadata={"description": "Last day (Berlin), included."})


class FollowUpQueryArgs(ma.Schema):
    assignee = ma.fields.String(validate=validate.Length(min=1, max=254))
    state = ma.fields.String(
        load_default="open", validate=validate.OneOf(("open", "overdue", "done", "all"))
    )


class AssigneeLoadSchema(ma.Schema):
    assignee = ma.fields.String()
    open = ma.fields.Integer()
    overdue = ma.fields.Integer()


# Trainings.


def _no_line_break(value: str) -> None:
    # The title is part of mail subjects.
    if has_line_break(value):
        raise ma.ValidationError("Line breaks are not allowed.")


class TrainingInSchema(ma.Schema):
    title = ma.fields.String(
        required=True, validate=[validate.Length(min=1, max=200), _no_line_break]
    )
    description = ma.fields.String(load_default="", validate=validate.Length(max=20000))
    topic = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    starts_at = BerlinDateTime(required=True)
    ends_at = BerlinDateTime(required=True)
    location_name = ma.fields.String(load_default="", validate=validate.Length(max=200))
    location_address = ma.fields.String(load_default="", validate=validate.Length(max=300))
    trainer = ma.fields.String(load_default="", validate=validate.Length(max=200))
    capacity = ma.fields.Integer(required=True, validate=validate.Range(min=0, max=10000))
    waitlist_limit = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=10000),
        metadata={"description": "How many may wait for a seat; null: no limit."},
    )
    signup_deadline = BerlinDateTime(load_default=None, allow_none=True)
    status = ma.fields.String(load_default="draft", validate=validate.OneOf(("draft", "published")))


class TrainingPatchSchema(ma.Schema):
    title = ma.fields.String(validate=[validate.Length(min=1, max=200), _no_line_break])
    description = ma.fields.String(validate=validate.Length(max=20000))
    topic = ma.fields.String(allow_none=True, validate=validate.Length(max=80))
    starts_at = BerlinDateTime()
    ends_at = BerlinDateTime()
    location_name = ma.fields.String(validate=validate.Length(max=200))
    location_address = ma.fields.String(validate=validate.Length(max=300))
    trainer = ma.fields.String(validate=validate.Length(max=200))
    capacity = ma.fields.Integer(validate=validate.Range(min=0, max=10000))
    waitlist_limit = ma.fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10000))
    signup_deadline = BerlinDateTime(allow_none=True)
    status = ma.fields.String(validate=validate.OneOf(TRAINING_STATUSES))


class TrainingOutSchema(ma.Schema):
    id = ma.fields.UUID()
    title = ma.fields.String()
    description = ma.fields.String()
    topic = ma.fields.String(allow_none=True)
    starts_at = BerlinDateTime()
    ends_at = BerlinDateTime()
    location_name = ma.fields.String()
    location_address = ma.fields.String()
    trainer = ma.fields.String()
    capacity = ma.fields.Integer()
    waitlist_limit = ma.fields.Integer(allow_none=True)
    signup_deadline = BerlinDateTime(allow_none=True)
    status = ma.fields.String()
    sequence = ma.fields.Integer()
    confirmed = ma.fields.Integer()
    waitlisted = ma.fields.Integer()
    pending = ma.fields.Integer()
    seats_left = ma.fields.Integer()


class TrainingQueryArgs(PageArgs):
    status = ma.fields.String(validate=validate.OneOf(TRAINING_STATUSES))


class PublicTrainingSchema(ma.Schema):
    id = ma.fields.UUID()
    title = ma.fields.String()
    description = ma.fields.String()
    topic = ma.fields.String(allow_none=True)
    starts_at = BerlinDateTime()
    ends_at = BerlinDateTime()
    location_name = ma.fields.String()
    location_address = ma.fields.String()
    trainer = ma.fields.String()
    capacity = ma.fields.Integer()
    seats_left = ma.fields.Integer()
    signup_deadline = BerlinDateTime(allow_none=True)
    signup_url = ma.fields.String()
    ics_url = ma.fields.String()


# Registrations: public messages in German.

_REQUIRED: dict[str, Any] = {"required": "Dieses Feld ist erforderlich."}


def _one_line(value: str) -> None:
    # The name goes into mail headers, where no kind of line break may stand.
    if has_line_break(value):
        raise ma.ValidationError("Bitte ohne Zeilenumbruch.")


class SignUpInSchema(ma.Schema):
    name = ma.fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=200, error="Bitte geben Sie Ihren Namen an."),
            _one_line,
        ],
        error_messages=_REQUIRED,
    )
    email = ma.fields.Email(
        required=True,
        validate=validate.Length(max=254),
        error_messages={**_REQUIRED, "invalid": "Bitte geben Sie eine gültige E-Mail-Adresse an."},
    )
    organisation_name = ma.fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=300)
    )
    phone = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(
            r"^[0-9+()/ \-]{3,40}$", error="Bitte geben Sie eine gültige Telefonnummer an."
        ),
    )
    newsletter = Boolean(
        load_default=False,
        metadata={
            "description": "A separate, unticked box: asks for the newsletter's own double "
            "opt-in; never a consent by itself."
        },
    )


class SignUpOutSchema(ma.Schema):
    id = ma.fields.UUID(attribute="registration.id")
    status = ma.fields.Constant("pending")
    message = ma.fields.Constant(
        "Bitte bestätigen Sie Ihre Anmeldung über den Link in der E-Mail, die wir Ihnen "
        "gerade geschickt haben."
    )


class RegistrationOutSchema(ma.Schema):
    id = ma.fields.UUID()
    training_id = ma.fields.UUID()
    name = ma.fields.String()
    email = ma.fields.String(allow_none=True)
    organisation_name = ma.fields.String(allow_none=True)
    organisation_id = ma.fields.UUID(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    newsletter = Boolean()
    status = ma.fields.String()
    waitlist_position = ma.fields.Integer(allow_none=True)
    created_at = BerlinDateTime()
    confirmed_at = BerlinDateTime(allow_none=True)
    cancelled_at = BerlinDateTime(allow_none=True)
    attended = Boolean(allow_none=True)


class LinkResultSchema(ma.Schema):
    id = ma.fields.UUID()
    training_id = ma.fields.UUID()
    status = ma.fields.String()
    waitlist_position = ma.fields.Integer(allow_none=True)


class RegistrationQueryArgs(ma.Schema):
    status = ma.fields.String(validate=validate.OneOf(REGISTRATION_STATUSES))


class AttendanceInSchema(ma.Schema):
    attended = Boolean(required=True)
