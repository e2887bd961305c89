"""Staff tokens (JWT), roles, service tokens, password hashing and signed links for mails."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import flask_smorest
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

ISSUER = "quartier"
AUDIENCE = "quartier-api"
ALGORITHM = "HS256"
SERVICE_TOKEN_TTL = timedelta(minutes=5)

ADMIN = "admin"
COORDINATOR = "coordinator"
VIEWER = "viewer"
SERVICE = "service"
STAFF_ROLES = (ADMIN, COORDINATOR, VIEWER)
ALL_ROLES = (*STAFF_ROLES, SERVICE)

# Who may do what, by the usual grades; views name one of these.
READERS = (ADMIN, COORDINATOR, VIEWER, SERVICE)
WRITERS = (ADMIN, COORDINATOR)
ADMINS = (ADMIN,)

F = TypeVar("F", bound=Callable[..., Any])

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    email: str | None = None


class InvalidToken(Exception):
    pass


def issue_token(
    secret: str, *, subject: str, role: str, ttl: timedelta, email: str | None = None
) -> str:
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    if email:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def service_token(secret: str, service: str) -> str:
    return issue_token(secret, subject=f"service:{service}", role=SERVICE, ttl=SERVICE_TOKEN_TTL)


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("The token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("The token is not valid.") from exc
    role = claims.get("role")
    if role not in ALL_ROLES:
        raise InvalidToken("The token carries no known role.")
    return Principal(subject=str(claims["sub"]), role=role, email=claims.get("email"))


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_roles(roles: Iterable[str]) -> Callable[[F], F]:
    allowed = frozenset(roles)

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _bearer_token()
            if token is None:
                flask_smorest.abort(401, message="A bearer token is required.")
            try:
                principal = decode_token(current_app.config["SECRET_KEY"], cast(str, token))
            except InvalidToken as exc:
                flask_smorest.abort(401, message=str(exc))
            if principal.role not in allowed:
                flask_smorest.abort(403, message="Your role may not do this.")
            g.principal = principal
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def current_principal() -> Principal:
    return cast(Principal, g.principal)


# Signed links in mails: purpose-scoped (the salt) and expiring.


class LinkError(Exception):
    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def sign_link(secret: str, purpose: str, payload: Any) -> str:
    return URLSafeTimedSerializer(secret, salt=f"quartier.{purpose}").dumps(payload)


def load_link(secret: str, purpose: str, token: str, max_age: timedelta) -> Any:
    serializer = URLSafeTimedSerializer(secret, salt=f"quartier.{purpose}")
    try:
        return serializer.loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired as exc:
        raise LinkError("This link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise LinkError("This link is not valid.") from exc
