"""Newsletter's payloads: In (requests), Out (responses), QueryArgs."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from shared.api import BerlinDateTime, Boolean, PageArgs

from .models import BODY_FORMATS, CONSENT_SOURCES, SUBSCRIBER_STATES, SUBSCRIPTION_STATUSES

# No line break anywhere: "(?![\s\S])" is the end of the text in Python and in the
# ECMA-262 dialect of OpenAPI patterns alike ("$" would let a final newline through, "\Z"
# is Python's alone).
ONE_LINE = validate.Regexp(
    r"^[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*(?![\s\S])", error="Line breaks are not allowed."
)


def one_line(max_length: int, **kwargs: object) -> ma.fields.String:
    return ma.fields.String(
        validate=[validate.Length(max=max_length), ONE_LINE],
        **kwargs,  # type: ignore[arg-type]
    )


class ListInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=[validate.Length(min=1, max=200), ONE_LINE])
    description = ma.fields.String(load_default="", validate=validate.Length(max=5000))
    public = Boolean(load_default=True)
    training_signup = Boolean(load_default=False)


class ListPatchSchema(ma.Schema):
    name = ma.fields.String(validate=[validate.Length(min=1, max=200), ONE_LINE])
    description = ma.fields.String(validate=validate.Length(max=5000))
    public = Boolean()
    training_signup = Boolean()


class ListOutSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    description = ma.fields.String()
    public = Boolean()
    training_signup = Boolean()
    created_at = BerlinDateTime()


class PublicSubscribeSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    name = one_line(200, load_default="")
    list_ids = ma.fields.List(ma.fields.UUID(), required=True, validate=validate.Length(min=1))
    consent_text_version = one_line(100, load_default="v1")


class AcceptedSchema(ma.Schema):
    status = ma.fields.String()
    detail = ma.fields.String()


class ConsentSourceSchema(ma.Schema):
    source = ma.fields.String(required=True, validate=validate.OneOf(CONSENT_SOURCES))
    consent_text_version = one_line(100, required=True)
    note = ma.fields.String(required=True, validate=validate.Length(min=1, max=2000))
    consented_at = BerlinDateTime(required=True)


class SubscriberInSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    name = one_line(200, load_default="")
    organisation_id = ma.fields.UUID(load_default=None, allow_none=True)
    list_ids = ma.fields.List(ma.fields.UUID(), required=True, validate=validate.Length(min=1))
    consent = ma.fields.Nested(ConsentSourceSchema, required=True)


class ImportRowSchema(ma.Schema):
    email = ma.fields.String(required=True)
    name = ma.fields.String(load_default="")
    organisation_id = ma.fields.UUID(load_default=None, allow_none=True)


class ImportInSchema(ConsentSourceSchema):
    list_ids = ma.fields.List(ma.fields.UUID(), required=True, validate=validate.Length(min=1))
    status = ma.fields.String(
        load_default="confirmed", validate=validate.OneOf(("confirmed", "unconfirmed"))
    )
    subscribers = ma.fields.List(
        ma.fields.Nested(ImportRowSchema), validate=validate.Length(max=100000)
    )
    csv = ma.fields.String(metadata={"description": "CSV text with a header line: email,name"})

    @ma.validates_schema
    def _one_source(self, data: dict[str, object], **_kwargs: object) -> None:
        if ("subscribers" in data) == ("csv" in data):
            raise ma.ValidationError("Give either subscribers or csv.", "subscribers")


class ImportOutSchema(ma.Schema):
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    suppressed = ma.fields.Integer()


class SubscriberPatchSchema(ma.Schema):
    name = one_line(200)
    organisation_id = ma.fields.UUID(allow_none=True)
    state = ma.fields.String(validate=validate.OneOf(SUBSCRIBER_STATES))


class SubscriberArgs(PageArgs):
    list_id = ma.fields.UUID()
    status = ma.fields.String(validate=validate.OneOf(SUBSCRIPTION_STATUSES))
    q = ma.fields.String(validate=validate.Length(max=254))


class SubscriberOutSchema(ma.Schema):
    id = ma.fields.UUID()
    email = ma.fields.String()
    name = ma.fields.String()
    organisation_id = ma.fields.UUID(allow_none=True)
    state = ma.fields.String()
    created_at = BerlinDateTime()


class SubscriptionOutSchema(ma.Schema):
    list_id = ma.fields.UUID()
    status = ma.fields.String()
    created_at = BerlinDateTime()
    confirmed_at = BerlinDateTime(allow_none=True)
    unsubscribed_at = BerlinDateTime(allow_none=True)


class ConsentOutSchema(ma.Schema):
    id = ma.fields.UUID()
    list_ids = ma.fields.List(ma.fields.UUID())
    source = ma.fields.String()
    consent_text_version = ma.fields.String()
    note = ma.fields.String()
    requested_at = BerlinDateTime()
    request_ip = ma.fields.String(allow_none=True)
    request_user_agent = ma.fields.String(allow_none=True)
    confirmed_at = BerlinDateTime(allow_none=True)
    confirm_ip = ma.fields.String(allow_none=True)
    confirm_user_agent = ma.fields.String(allow_none=True)


class SubscriberDetailSchema(SubscriberOutSchema):
    subscriptions = ma.fields.List(ma.fields.Nested(SubscriptionOutSchema))
    consents = ma.fields.List(ma.fields.Nested(ConsentOutSchema))


class SegmentSchema(ma.Schema):
    districts = ma.fields.List(one_line(200), load_default=list)
    kinds = ma.fields.List(
        ma.fields.String(
            validate=validate.OneOf(("business", "landlord", "housing_company", "partner", "other"))
        ),
        load_default=list,
    )
    needs = ma.fields.List(one_line(100), load_default=list)


class CampaignInSchema(ma.Schema):
    name = one_line(200, load_default="")
    subject = ma.fields.String(required=True, validate=[validate.Length(min=1, max=300), ONE_LINE])
    preheader = one_line(300, load_default="")
    body = ma.fields.String(required=True, validate=validate.Length(min=1, max=1_000_000))
    body_format = ma.fields.String(load_default="markdown", validate=validate.OneOf(BODY_FORMATS))
    body_text = ma.fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=1_000_000)
    )
    list_ids = ma.fields.List(ma.fields.UUID(), required=True, validate=validate.Length(min=1))
    segment = ma.fields.Nested(SegmentSchema, load_default=dict)


class CampaignPatchSchema(ma.Schema):
    name = one_line(200)
    subject = ma.fields.String(validate=[validate.Length(min=1, max=300), ONE_LINE])
    preheader = one_line(300)
    body = ma.fields.String(validate=validate.Length(min=1, max=1_000_000))
    body_format = ma.fields.String(validate=validate.OneOf(BODY_FORMATS))
    body_text = ma.fields.String(allow_none=True, validate=validate.Length(max=1_000_000))
    list_ids = ma.fields.List(ma.fields.UUID(), validate=validate.Length(min=1))
    segment = ma.fields.Nested(SegmentSchema)


class CampaignOutSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    subject = ma.fields.String()
    preheader = ma.fields.String()
    body = ma.fields.String()
    body_format = ma.fields.String()
    body_text = ma.fields.String(allow_none=True)
    list_ids = ma.fields.List(ma.fields.UUID())
    segment = ma.fields.Dict()
    state = ma.fields.String()
    scheduled_at = BerlinDateTime(allow_none=True)
    started_at = BerlinDateTime(allow_none=True)
    finished_at = BerlinDateTime(allow_none=True)
    paused_reason = ma.fields.String(allow_none=True)
    total = ma.fields.Integer()
    created_at = BerlinDateTime()


class TestSendSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    name = one_line(200, load_default="")


class ScheduleSchema(ma.Schema):
    at = BerlinDateTime(required=True)


class ProgressSchema(ma.Schema):
    campaign_id = ma.fields.UUID()
    state = ma.fields.String()
    paused_reason = ma.fields.String(allow_none=True)
    prepared = Boolean()
    total = ma.fields.Integer()
    sent = ma.fields.Integer()
    pending = ma.fields.Integer()
    failed = ma.fields.Integer()
    bounced = ma.fields.Integer()
    skipped = ma.fields.Integer()
    unsubscribed = ma.fields.Integer()
    rate_per_second = ma.fields.Float()
    estimated_end = BerlinDateTime(allow_none=True)
    started_at = BerlinDateTime(allow_none=True)
    finished_at = BerlinDateTime(allow_none=True)


class BounceJsonSchema(ma.Schema):
    email = ma.fields.Email(required=True)
    type = ma.fields.String(required=True, validate=validate.OneOf(("hard", "soft")))
    status = ma.fields.String(load_default="", validate=validate.Length(max=20))
    diagnostic = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    campaign_id = ma.fields.UUID(load_default=None, allow_none=True)


class RecordedSchema(ma.Schema):
    recorded = ma.fields.Integer()


class UnsubscribedSchema(ma.Schema):
    subscriber_id = ma.fields.UUID()


class SuppressionOutSchema(ma.Schema):
    email = ma.fields.String()
    reason = ma.fields.String()
    created_at = BerlinDateTime()


class DigestScheduleInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=[validate.Length(min=1, max=200), ONE_LINE])
    list_ids = ma.fields.List(ma.fields.UUID(), required=True, validate=validate.Length(min=1))
    weekday = ma.fields.Integer(load_default=0, validate=validate.Range(min=0, max=6))
    nth = ma.fields.Integer(load_default=1, validate=validate.Range(min=1, max=4))
    hour = ma.fields.Integer(load_default=9, validate=validate.Range(min=0, max=23))
    minute = ma.fields.Integer(load_default=0, validate=validate.Range(min=0, max=59))
    subject = ma.fields.String(
        load_default="Schulungen und Workshops",
        validate=[validate.Length(min=1, max=300), ONE_LINE],
    )
    active = Boolean(load_default=True)


class DigestScheduleOutSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    list_ids = ma.fields.List(ma.fields.UUID())
    weekday = ma.fields.Integer()
    nth = ma.fields.Integer()
    hour = ma.fields.Integer()
    minute = ma.fields.Integer()
    subject = ma.fields.String()
    active = Boolean()


class DigestRunOutSchema(ma.Schema):
    id = ma.fields.UUID()
    period = ma.fields.String()
    outcome = ma.fields.String()
    campaign_id = ma.fields.UUID(allow_none=True)
    training_ids = ma.fields.List(ma.fields.String())
    created_at = BerlinDateTime()
