"""Contacts' payloads: In (requests), Out (responses), QueryArgs."""

from __future__ import annotations

import decimal
import json
from typing import Any

import marshmallow as ma
from marshmallow import validate

from shared.api import BerlinDateTime, Boolean, PageArgs, page_schema
from shared.auth import STAFF_ROLES

from .models import (
    NEED_KEY_LENGTH,
    ORGANISATION_KINDS,
    ORGANISATION_STATUSES,
    PREMISES_STATUSES,
    PREMISES_USES,
    ROLES,
)
from .websites import InvalidHost, port_in_range, with_ascii_host, with_scheme


class TokenRequestSchema(ma.Schema):
    email = ma.fields.Email(required=True)
    password = ma.fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(ma.Schema):
    access_token = ma.fields.String()
    token_type = ma.fields.String()
    expires_in = ma.fields.Integer()
    role = ma.fields.String()


class UserInSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    name = ma.fields.String(load_default="", validate=validate.Length(max=200))
    role = ma.fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    password = ma.fields.String(
        required=True, load_only=True, validate=validate.Length(min=12, max=1024)
    )


class UserPatchSchema(ma.Schema):
    name = ma.fields.String(validate=validate.Length(max=200))
    role = ma.fields.String(validate=validate.OneOf(STAFF_ROLES))
    is_active = Boolean()
    password = ma.fields.String(load_only=True, validate=validate.Length(min=12, max=1024))


class UserOutSchema(ma.Schema):
    id = ma.fields.UUID()
    email = ma.fields.String()
    name = ma.fields.String()
    role = ma.fields.String()
    is_active = Boolean()
    created_at = BerlinDateTime()
    last_login_at = BerlinDateTime(allow_none=True)


# The register.

# Patterns are published in the OpenAPI document, where clients read them as ECMA-262:
# ASCII digits spelled out (Python's \d is any Unicode digit), and "(?![\s\S])" for the
# end of the text in both dialects (Python's $ also matches before a final line break).
END = r"(?![\s\S])"
POSTCODE = validate.Regexp(r"^[0-9]{5}" + END, error="A German postcode has five digits.")
PHONE = validate.Regexp(r"^[+0-9 ()/\-.]{3,60}" + END, error="Not a phone number.")
# A WZ 2008 code of any of its levels: section (Abschnitt) A-U, division (Abteilung) 47,
# group (Gruppe) 47.1, class (Klasse) 47.11, subclass (Unterklasse) 47.11.1.
WZ_CODE = validate.Regexp(
    r"^(?:[A-U]|[0-9]{2}(?:\.[0-9](?:[0-9](?:\.[0-9])?)?)?)" + END,
    error="A WZ 2008 code: a section A to U, or 47, 47.1, 47.11 or 47.11.1.",
)

# The largest floor area the schemas accept, in m²; the column holds 8 digits before the point.
MAX_AREA = 10_000_000
MAX_VERSION = 2**63 - 1  # a bigint


def _one_of(values: tuple[str, ...]) -> validate.OneOf:
    return validate.OneOf(values, error="Must be one of: {choices}.")


def _text(max_length: int, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(allow_none=True, validate=validate.Length(max=max_length), **kwargs)


def _name(max_length: int = 300, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=[
            validate.Length(min=1, max=max_length),
            validate.Regexp(r"\S", error="Must not be empty."),
        ],
        **kwargs,
    )


class WholeNumber(ma.fields.Integer):
    """An integer that is not cut: 1.5 is refused, where ``Integer`` stores 1. Written as a
    JSON number (12 or 12.0) or as a string of digits ("12"), as a CSV cell gives it."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Website(ma.fields.Url):
    """A web address as people write it: ``www.beispiel.de`` is ``https://www.beispiel.de``
    (a scheme is added to an address without one that starts like a host name), and
    ``bäckerei-müller.de`` is a host (an internationalised domain name). Kept as written;
    checked as marshmallow checks a URL, with such a host in its ASCII form (see
    websites.py), so that a host that is no domain name is refused either way; a port, if
    given, is one of 1 to 65535."""

    default_error_messages = {"port": "A port is a number from 1 to 65535."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(schemes=WEB_SCHEMES, **kwargs)
        # Url's own check, of the address as written, becomes one of its ASCII form.
        self.validators = [
            self._check_ascii_form if isinstance(check, validate.URL) else check
            for check in self.validators
        ]

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = with_scheme(value)
        return super()._deserialize(value, attr, data, **kwargs)

    def _check_ascii_form(self, value: str) -> None:
        try:
            _WEB_ADDRESS(with_ascii_host(value))
        except (InvalidHost, ma.ValidationError) as exc:
            raise self.make_error("invalid") from exc
        if not port_in_range(value):
            raise self.make_error("port")


WEB_SCHEMES = frozenset({"http", "https"})
_WEB_ADDRESS = validate.URL(schemes=WEB_SCHEMES)


class OrganisationInSchema(ma.Schema):
    kind = ma.fields.String(required=True, validate=_one_of(ORGANISATION_KINDS))
    name = _name(required=True)
    legal_form = _text(60)
    sector = _text(200)
    wz_code = ma.fields.String(allow_none=True, validate=WZ_CODE)
    street = _text(200)
    house_number = _text(20)
    postcode = ma.fields.String(allow_none=True, validate=POSTCODE)
    city = _text(120)
    district = _text(120, metadata={"description": "A district name from GET /districts"})
    latitude = ma.fields.Float(allow_none=True, validate=validate.Range(min=-90, max=90))
    longitude = ma.fields.Float(allow_none=True, validate=validate.Range(min=-180, max=180))
    website = Website(allow_none=True, validate=validate.Length(max=500))
    email = ma.fields.Email(allow_none=True, validate=validate.Length(max=254))
    phone = ma.fields.String(allow_none=True, validate=PHONE)
    employees = WholeNumber(allow_none=True, validate=validate.Range(min=0, max=10_000_000))
    status = ma.fields.String(validate=_one_of(ORGANISATION_STATUSES))
    needs = ma.fields.List(ma.fields.String(), metadata={"description": "Need keys"})
    tags = ma.fields.List(ma.fields.String(validate=validate.Length(min=1, max=80)))
    notes = ma.fields.String(allow_none=True, validate=validate.Length(max=20000))


class Partial(ma.Schema):
    """For PATCH: every field optional; a nested record given (a role) is still checked
    whole (``partial=True`` would reach into nested schemas)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", tuple(self._declared_fields))
        super().__init__(*args, **kwargs)


class OrganisationPatchSchema(Partial, OrganisationInSchema):
    version = WholeNumber(
        validate=validate.Range(min=1, max=MAX_VERSION),
        metadata={"description": "The version you changed; 409 if it changed meanwhile"},
    )


class RoleOutSchema(ma.Schema):
    person_id = ma.fields.UUID()
    organisation_id = ma.fields.UUID()
    organisation_name = ma.fields.Function(lambda role: role.organisation.name)
    person_name = ma.fields.Function(
        lambda role: f"{role.person.first_name} {role.person.last_name}".strip()
    )
    role = ma.fields.String()


class OrganisationOutSchema(ma.Schema):
    id = ma.fields.UUID()
    kind = ma.fields.String()
    name = ma.fields.String()
    legal_form = ma.fields.String(allow_none=True)
    sector = ma.fields.String(allow_none=True)
    wz_code = ma.fields.String(allow_none=True)
    street = ma.fields.String(allow_none=True)
    house_number = ma.fields.String(allow_none=True)
    postcode = ma.fields.String(allow_none=True)
    city = ma.fields.String(allow_none=True)
    district = ma.fields.Function(lambda org: org.district.name if org.district else None)
    latitude = ma.fields.Float(allow_none=True)
    longitude = ma.fields.Float(allow_none=True)
    website = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    employees = ma.fields.Integer(allow_none=True)
    status = ma.fields.String()
    needs = ma.fields.Function(lambda org: [need.key for need in org.needs])
    tags = ma.fields.List(ma.fields.String())
    notes = ma.fields.String()
    people = ma.fields.List(ma.fields.Nested(RoleOutSchema), attribute="roles")
    archived = Boolean()
    version = ma.fields.Integer()
    created_at = BerlinDateTime()
    updated_at = BerlinDateTime()


# A district or need to filter by: one of GET /districts or /needs; empty is none of them.
_FILTER_NAME = ma.fields.String(validate=validate.Length(min=1))


class ListArgs(PageArgs):
    sort = ma.fields.String(load_default=None)
    archived = Boolean(
        load_default=False, metadata={"description": "List archived records instead"}
    )


class OrganisationQueryArgs(ListArgs):
    kind = ma.fields.List(ma.fields.String(validate=_one_of(ORGANISATION_KINDS)))
    district = ma.fields.List(_FILTER_NAME)
    status = ma.fields.List(ma.fields.String(validate=_one_of(ORGANISATION_STATUSES)))
    needs = ma.fields.List(_FILTER_NAME, metadata={"description": "Any of these needs"})
    tags = ma.fields.List(ma.fields.String(), metadata={"description": "All of these tags"})


class RoleInSchema(ma.Schema):
    organisation_id = ma.fields.UUID(required=True)
    role = ma.fields.String(required=True, validate=_one_of(ROLES))


class PersonInSchema(ma.Schema):
    first_name = _text(120, load_default="")
    last_name = _text(120, load_default="")
    email = ma.fields.Email(allow_none=True, validate=validate.Length(max=254))
    phone = ma.fields.String(allow_none=True, validate=PHONE)
    notes = ma.fields.String(allow_none=True, validate=validate.Length(max=20000))
    roles = ma.fields.List(ma.fields.Nested(RoleInSchema))

    @ma.validates_schema
    def _has_a_name(self, data: dict[str, Any], **_kwargs: Any) -> None:
        """Refused here when both are sent empty; a change that sends one of them is checked
        by the use case, against the other as stored."""
        if (
            "first_name" in data
            and "last_name" in data
            and not ((data["first_name"] or "").strip() or (data["last_name"] or "").strip())
        ):
            raise ma.ValidationError("A person needs a first or a last name.", "last_name")


class PersonPatchSchema(Partial, PersonInSchema):
    first_name = _text(120)
    last_name = _text(120)


class PersonOutSchema(ma.Schema):
    id = ma.fields.UUID()
    first_name = ma.fields.String()
    last_name = ma.fields.String()
    email = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    notes = ma.fields.String()
    roles = ma.fields.List(ma.fields.Nested(RoleOutSchema))
    archived = Boolean()
    version = ma.fields.Integer()
    created_at = BerlinDateTime()
    updated_at = BerlinDateTime()


class PersonQueryArgs(ListArgs):
    organisation_id = ma.fields.UUID()
    role = ma.fields.List(ma.fields.String(validate=_one_of(ROLES)))
    email = ma.fields.String()


class PeopleExportArgs(ma.Schema):
    organisation_id = ma.fields.UUID()


class PremisesInSchema(ma.Schema):
    street = _name(200, required=True)
    house_number = _text(20)
    postcode = ma.fields.String(allow_none=True, validate=POSTCODE)
    city = _text(120)
    district = _text(120)
    floor_area = ma.fields.Decimal(
        required=True,
        places=2,
        validate=validate.Range(min=0, max=MAX_AREA, min_inclusive=False),
        # apispec documents the minimum but not that it is exclusive (OpenAPI 3.0: a flag).
        metadata={"exclusiveMinimum": True},
    )
    use = ma.fields.String(required=True, validate=_one_of(PREMISES_USES))
    owner_id = ma.fields.UUID(required=True)
    tenant_id = ma.fields.UUID(allow_none=True)
    status = ma.fields.String(validate=_one_of(PREMISES_STATUSES))
    rent_per_m2 = ma.fields.Decimal(
        allow_none=True, places=2, validate=validate.Range(min=0, max=100_000)
    )
    available_from = ma.fields.Date(allow_none=True)
    notes = ma.fields.String(allow_none=True, validate=validate.Length(max=20000))


class PremisesPatchSchema(Partial, PremisesInSchema):
    pass


class PremisesOutSchema(ma.Schema):
    id = ma.fields.UUID()
    street = ma.fields.String()
    house_number = ma.fields.String(allow_none=True)
    postcode = ma.fields.String(allow_none=True)
    city = ma.fields.String(allow_none=True)
    district = ma.fields.Function(lambda p: p.district.name if p.district else None)
    # JSON numbers, as documented: stored to the hundredth with at most ten digits, which
    # a double holds exactly enough to be written back as the same decimal.
    floor_area = ma.fields.Float()
    use = ma.fields.String()
    owner_id = ma.fields.UUID()
    owner_name = ma.fields.Function(lambda p: p.owner.name)
    tenant_id = ma.fields.UUID(allow_none=True)
    tenant_name = ma.fields.Function(lambda p: p.tenant.name if p.tenant else None)
    status = ma.fields.String()
    rent_per_m2 = ma.fields.Float(allow_none=True)
    available_from = ma.fields.Date(allow_none=True)
    notes = ma.fields.String()
    archived = Boolean()
    version = ma.fields.Integer()
    created_at = BerlinDateTime()
    updated_at = BerlinDateTime()


class PremisesQueryArgs(ListArgs):
    status = ma.fields.List(ma.fields.String(validate=_one_of(PREMISES_STATUSES)))
    district = ma.fields.List(_FILTER_NAME)
    use = ma.fields.List(ma.fields.String(validate=_one_of(PREMISES_USES)))
    # To the hundredth the areas are stored in: up for the least, down for the most, so that
    # a filter finds what it would find unrounded.
    min_area = ma.fields.Decimal(
        places=2, rounding=decimal.ROUND_CEILING, validate=validate.Range(min=0, max=MAX_AREA)
    )
    max_area = ma.fields.Decimal(
        places=2, rounding=decimal.ROUND_FLOOR, validate=validate.Range(min=0, max=MAX_AREA)
    )
    owner_id = ma.fields.UUID()


class ArchiveSchema(ma.Schema):
    archived = Boolean(required=True)


class ChangeOutSchema(ma.Schema):
    id = ma.fields.Integer()
    entity_id = ma.fields.String(metadata={"description": "Differs for a merged record's past"})
    at = BerlinDateTime()
    actor = ma.fields.String()
    action = ma.fields.String()
    changed = ma.fields.Function(
        lambda c: sorted((c.after or c.before or {}).keys()) if c.action != "created" else []
    )
    before = ma.fields.Dict(allow_none=True)
    after = ma.fields.Dict(allow_none=True)


class DistrictInSchema(ma.Schema):
    name = _name(120, required=True)


class DistrictPatchSchema(ma.Schema):
    name = _name(120)
    active = Boolean()


class DistrictOutSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    active = Boolean()


class NeedInSchema(ma.Schema):
    label = _name(120, required=True)
    key = ma.fields.String(
        validate=validate.Regexp(
            f"^[a-z0-9][a-z0-9-]{{0,{NEED_KEY_LENGTH - 1}}}{END}",
            error=f"Lower-case letters, digits and hyphens, at most {NEED_KEY_LENGTH}.",
        ),
        metadata={"description": "Made from the label if not given"},
    )


class NeedPatchSchema(ma.Schema):
    label = _name(120)
    active = Boolean()


class NeedOutSchema(ma.Schema):
    key = ma.fields.String()
    label = ma.fields.String()
    active = Boolean()


class SearchArgs(ma.Schema):
    q = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    limit = ma.fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    archived = Boolean(load_default=False, metadata={"description": "Include archived"})


class HitSchema(ma.Schema):
    type = ma.fields.String(metadata={"description": "organisation or person"})
    id = ma.fields.UUID()
    label = ma.fields.String()
    detail = ma.fields.String()
    rank = ma.fields.Float()


class SearchResultSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HitSchema))


class OrganisationBriefSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    legal_form = ma.fields.String(allow_none=True)
    street = ma.fields.String(allow_none=True)
    house_number = ma.fields.String(allow_none=True)
    postcode = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)


class DuplicateSchema(ma.Schema):
    first = ma.fields.Nested(OrganisationBriefSchema)
    second = ma.fields.Nested(OrganisationBriefSchema)
    reasons = ma.fields.List(ma.fields.String(), metadata={"description": "name, email, phone"})


class DuplicateArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    organisation_id = ma.fields.UUID(metadata={"description": "Only pairs with this one"})


class MergeSchema(ma.Schema):
    other_id = ma.fields.UUID(
        required=True, metadata={"description": "Folded into this one, then archived"}
    )


OrganisationPageSchema = page_schema(OrganisationOutSchema)
PersonPageSchema = page_schema(PersonOutSchema)
PremisesPageSchema = page_schema(PremisesOutSchema)


class UploadFileSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class ColumnMapping(ma.fields.Field):
    """A form part holding JSON: CSV header -> field name, or null to ignore the column.
    Documented as an object, which a multipart body sends as JSON (OpenAPI 3.0)."""

    def __init__(self, **kwargs: Any) -> None:
        nullable_name = {"type": "string", "nullable": True}
        kwargs.setdefault("metadata", {}).update(type="object", additionalProperties=nullable_name)
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not value:
            return {}
        try:
            mapping = json.loads(value)
        except (TypeError, ValueError) as exc:
            raise ma.ValidationError("Not valid JSON.") from exc
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
        ):
            raise ma.ValidationError("An object of header -> field name or null.")
        return mapping


class UploadFormSchema(ma.Schema):
    # Read from the files part (UploadFileSchema); named here so that the OpenAPI document
    # shows one multipart body with both fields.
    file = ma.fields.Raw(metadata={"type": "string", "format": "binary"})
    mapping = ColumnMapping(
        load_default=dict,
        metadata={"description": 'CSV header -> field (or null to ignore), e.g. {"Kunde": "name"}'},
    )
    background = Boolean(
        load_default=None,
        allow_none=True,
        metadata={"description": "Check the rows in a worker; by default only large files are"},
    )


class ImportCommitSchema(ma.Schema):
    mode = ma.fields.String(required=True, validate=_one_of(("all_or_nothing", "valid_only")))
    background = Boolean(
        load_default=None,
        allow_none=True,
        metadata={"description": "Run in a worker; by default only large files do"},
    )


class ImportOutSchema(ma.Schema):
    id = ma.fields.UUID()
    status = ma.fields.String(
        metadata={"description": "checking, previewed, queued, running, committed or failed"}
    )
    filename = ma.fields.String()
    encoding = ma.fields.String(
        metadata={
            "description": "utf-8, utf-8-sig (with BOM), utf-16, cp1252 (Windows-1252), or"
            " utf-8+cp1252 / utf-8-sig+cp1252: UTF-8 with some lines in Windows-1252"
            " (named in warnings)"
        }
    )
    delimiter = ma.fields.String()
    mapping = ma.fields.Dict()
    mode = ma.fields.String(allow_none=True)
    total_rows = ma.fields.Integer()
    valid_rows = ma.fields.Integer()
    invalid_rows = ma.fields.Function(lambda i: len(i.errors))
    processed_rows = ma.fields.Integer(
        metadata={"description": "Rows done of total_rows while checking or running"}
    )
    created_count = ma.fields.Integer(
        metadata={"description": "Created, or while previewed: would be created"}
    )
    updated_count = ma.fields.Integer(
        metadata={"description": "Matched existing records (updated where different)"}
    )
    skipped_count = ma.fields.Integer()
    people_created_count = ma.fields.Integer(
        metadata={"description": "People created, or while previewed: would be created"}
    )
    people_linked_count = ma.fields.Integer(
        metadata={
            "description": "People in the register or of an earlier row given a role at "
            "another organisation (or while previewed: would be)"
        }
    )
    errors = ma.fields.Function(
        lambda i: i.errors[:100], metadata={"description": "The first 100 row errors"}
    )
    warnings = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "About the file as a whole: lines that were not UTF-8 in a UTF-8"
            " file, read as Windows-1252 (check their umlauts)"
        },
    )
    created_by = ma.fields.String()
    created_at = BerlinDateTime()
    finished_at = BerlinDateTime(allow_none=True)


# Data protection: access, portability and erasure by email address (Art. 15, 17, 20 GDPR).


class PrivacyEmailSchema(ma.Schema):
    email = ma.fields.Email(
        required=True,
        validate=validate.Length(max=254),
        metadata={"description": "Compared as the register stores addresses: in any case"},
    )


class PrivacyExportArgs(PrivacyEmailSchema):
    download = Boolean(
        load_default=False,
        metadata={"description": "As a file to save (Content-Disposition: attachment)"},
    )


class OrganisationRecordSchema(OrganisationOutSchema):
    """An organisation's own fields: not its people, whose data is theirs."""

    class Meta:
        exclude = ("people",)


class PersonDataSchema(ma.Schema):
    person = ma.fields.Nested(PersonOutSchema, metadata={"description": "Fields and roles"})
    history = ma.fields.List(
        ma.fields.Nested(ChangeOutSchema), metadata={"description": "Oldest first"}
    )


class UploadBriefSchema(ma.Schema):
    id = ma.fields.UUID()
    filename = ma.fields.String()
    status = ma.fields.String()
    created_at = BerlinDateTime()


class NotedRecordSchema(ma.Schema):
    entity = ma.fields.String(metadata={"description": "organisation, person or premises"})
    id = ma.fields.UUID()


class MentionSchema(NotedRecordSchema):
    label = ma.fields.String(metadata={"description": "Its name (premises: the address)"})
    notes = ma.fields.String()


class SuppressionOutSchema(ma.Schema):
    created_at = BerlinDateTime()
    created_by = ma.fields.String()


class DataExportSchema(ma.Schema):
    email = ma.fields.String(metadata={"description": "The address, as the register stores it"})
    email_sha256 = ma.fields.String(metadata={"description": "What a suppression keeps of it"})
    generated_at = BerlinDateTime()
    people = ma.fields.List(
        ma.fields.Nested(PersonDataSchema), metadata={"description": "People with the address"}
    )
    organisations = ma.fields.List(
        ma.fields.Nested(OrganisationRecordSchema),
        metadata={"description": "Organisations that give the address as their own"},
    )
    imports = ma.fields.List(
        ma.fields.Nested(UploadBriefSchema),
        metadata={"description": "Uploaded CSV files (kept for the retention) that hold it"},
    )
    mentions = ma.fields.List(
        ma.fields.Nested(MentionSchema),
        metadata={
            "description": "Records whose notes mention the address, or a person with it by "
            "their full name: free text to read before it is given out"
        },
    )
    suppression = ma.fields.Nested(
        SuppressionOutSchema,
        allow_none=True,
        metadata={"description": "Since when the address is erased and not processed again"},
    )


class ErasureOutSchema(ma.Schema):
    email_sha256 = ma.fields.String(metadata={"description": "What the suppression keeps"})
    suppressed_at = BerlinDateTime(
        metadata={"description": "When the address was first suppressed"}
    )
    people = ma.fields.Integer(metadata={"description": "People deleted"})
    roles = ma.fields.Integer(metadata={"description": "Their roles, deleted"})
    organisations = ma.fields.Integer(
        metadata={"description": "Organisations whose email (the address) was cleared"}
    )
    imports = ma.fields.Integer(metadata={"description": "Uploads that held it, deleted"})
    history_entries = ma.fields.Integer(
        metadata={"description": "History entries whose personal data was removed"}
    )
    events = ma.fields.Integer(
        metadata={"description": "Stored events whose personal data was removed"}
    )
    notes_to_review = ma.fields.List(
        ma.fields.Nested(NotedRecordSchema),
        metadata={
            "description": "Records whose notes mention the address, or an erased person by "
            "their full name: free text the erasure leaves as it is, to be reviewed"
        },
    )
