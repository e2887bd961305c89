"""Contacts' routes: schema in, one use case, object out."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import flask_smorest
from flask.views import MethodView

from shared.api import API_PREFIX, Blueprint
from shared.app import get_settings
from shared.auth import ADMINS
from shared.db import db_session

from . import schemas, services

auth_blp = Blueprint("auth", __name__, url_prefix=f"{API_PREFIX}/auth", description="Staff sign-in")
users_blp = Blueprint(
    "users", __name__, url_prefix=f"{API_PREFIX}/users", description="Staff users"
)


@auth_blp.route("/token")
class Token(MethodView):
    @auth_blp.arguments(schemas.TokenRequestSchema)
    @auth_blp.response(200, schemas.TokenSchema)
    @auth_blp.alt_response(401, response="UNAUTHORIZED")
    def post(self, credentials: dict[str, Any]) -> Any:
        """Exchange email and password for a bearer token (JWT)."""
        settings = get_settings()
        issued = services.issue_user_token(
            db_session(),
            email=credentials["email"],
            password=credentials["password"],
            secret=settings.secret_key,
            ttl=timedelta(seconds=settings.token_ttl_seconds),
        )
        if issued is None:
            flask_smorest.abort(401, message="Wrong email or password, or the account is disabled.")
        return issued


@users_blp.route("")
class Users(MethodView):
    @users_blp.auth(ADMINS)
    @users_blp.response(200, schemas.UserOutSchema(many=True))
    def get(self) -> Any:
        """List staff users."""
        return services.list_users(db_session())

    @users_blp.auth(ADMINS)
    @users_blp.arguments(schemas.UserInSchema)
    @users_blp.response(201, schemas.UserOutSchema)
    @users_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a staff user."""
        return services.create_user(db_session(), **data)


@users_blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @users_blp.auth(ADMINS)
    @users_blp.response(200, schemas.UserOutSchema)
    def get(self, user_id: uuid.UUID) -> Any:
        """One staff user."""
        return services.get_user(db_session(), user_id)

    @users_blp.auth(ADMINS)
    @users_blp.arguments(schemas.UserPatchSchema)
    @users_blp.response(200, schemas.UserOutSchema)
    def patch(self, data: dict[str, Any], user_id: uuid.UUID) -> Any:
        """Change a user's name, role, password or whether the account is active."""
        return services.update_user(db_session(), user_id, **data)


BLUEPRINTS = (auth_blp, users_blp)
RATE_LIMITS = {auth_blp: "20 per minute"}  # against password guessing
