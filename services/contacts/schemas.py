"""Contacts' payloads: In (requests), Out (responses), QueryArgs."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from shared.auth import STAFF_ROLES


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
    is_active = ma.fields.Boolean()
    password = ma.fields.String(load_only=True, validate=validate.Length(min=12, max=1024))


class UserOutSchema(ma.Schema):
    id = ma.fields.UUID()
    email = ma.fields.String()
    name = ma.fields.String()
    role = ma.fields.String()
    is_active = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    last_login_at = ma.fields.DateTime(allow_none=True)
