"""Staff tokens (JWT), roles, service tokens, password hashing and signed links for mails."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import flask_smorest
import jwt
import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from flask import Flask, current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared.problems import ServiceUnavailable

ISSUER = "quartier"
AUDIENCE = "quartier-api"
ALGORITHM = "HS256"
SERVICE_TOKEN_TTL = timedelta(minutes=5)
LEEWAY = timedelta(seconds=5)  # clocks of the services may differ by this much
GENERATION_CLAIM = "gen"

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
    generation: int = 0  # of a staff user's tokens (see TokenRevocations); 0 if unnamed


class InvalidToken(Exception):
    pass


REVOKED = "The token was revoked (the account changed); sign in again."


def issue_token(
    secret: str,
    *,
    subject: str,
    role: str,
    ttl: timedelta,
    email: str | None = None,
    generation: int | None = None,
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
    if generation is not None:
        claims[GENERATION_CLAIM] = generation
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
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("The token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("The token is not valid.") from exc
    role = claims.get("role")
    if role not in ALL_ROLES:
        raise InvalidToken("The token carries no known role.")
    generation = claims.get(GENERATION_CLAIM, 0)
    if type(generation) is not int or generation < 0:
        raise InvalidToken("The token is not valid.")
    return Principal(
        subject=str(claims["sub"]), role=role, email=claims.get("email"), generation=generation
    )


# Revocation of staff tokens. A token is checked by its signature alone, on every service,
# so a change to a user (deactivated, another role, a new password) would reach their
# tokens only when those expire. Instead, each staff user has a token *generation* in
# Redis (shared by all services; absent means 0), every token carries the generation it
# was issued in, and a token of an older generation is refused. A change raises the
# generation, under the user's row lock and before its commit; a sign-in reads it under the
# same lock. So a token issued before the change is refused and one issued after it
# works, whatever the clocks of the processes say and however close together (a counter
# has no resolution to run out of, as a "not before" time of whole seconds would).
#
# A generation is kept in Redis without an expiry. An expiry of a token lifetime after the
# last sign-in or change would be the lifetime as configured at that moment: once an
# operator shortened TOKEN_TTL_SECONDS, a sign-in or change under the short setting would
# cut the key's life short, the key would lapse while tokens issued under the longer one
# still lived, the generation would count from 0 again, and those tokens, revoked, would
# be valid once more. Expiring a key after the longest-lived token ever issued for its user
# would be right too, but only as long as every process that issues or revokes kept track
# of that; a key kept for good is one small integer per staff user, and no setting, clock
# or process can make it lapse early. A key left with an expiry (as versions before this
# one set it) is made permanent at its user's next sign-in or change.
# Lookups are cached for a few seconds per process, so a change reaches the other
# processes within that time; the process that made it knows it at once.

REVOCATION_CACHE_SECONDS = 5.0
REVOCATIONS_KEY = "quartier.token_revocations"
REVOCATIONS_DOWN = "Tokens cannot be checked right now (Redis is unavailable); try again shortly."


class TokenRevocations:
    def __init__(
        self,
        client: redis.Redis,
        *,
        cache_seconds: float = REVOCATION_CACHE_SECONDS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache: TTLCache[str, int] = TTLCache(maxsize=10_000, ttl=cache_seconds, timer=timer)
        self._lock = threading.Lock()  # the cache is shared by a worker's threads

    @staticmethod
    def key(subject: str) -> str:
        return f"quartier:auth:generation:{subject}"

    def current(self, subject: str) -> int:
        """The subject's generation, as Redis said it at most a few seconds ago."""
        with self._lock:
            cached = self._cache.get(subject)
        if cached is not None:
            return cached
        with _token_store():
            value = int(self._client.get(self.key(subject)) or 0)
        return self._remember(subject, value)

    def for_new_token(self, subject: str) -> int:
        """The generation a new token of ``subject`` carries (kept without an expiry, if
        there is one). Call it under the user's row lock."""
        with _token_store(), self._client.pipeline(transaction=True) as pipe:
            pipe.persist(self.key(subject))
            pipe.get(self.key(subject))
            _, raw = pipe.execute()
        return self._remember(subject, int(raw or 0))

    def revoke(self, subject: str) -> int:
        """Void every token of ``subject`` issued so far. Call it under the user's row lock,
        before the commit: if Redis cannot be reached the change fails with it (503)."""
        with _token_store(), self._client.pipeline(transaction=True) as pipe:
            pipe.incr(self.key(subject))
            pipe.persist(self.key(subject))  # INCR keeps an expiry an older version set
            generation, _ = pipe.execute()
        with self._lock:
            self._cache[subject] = int(generation)
        return int(generation)

    def _remember(self, subject: str, value: int) -> int:
        # A lookup that started before this process revoked must not put back the older
        # value; generations never go down.
        with self._lock:
            value = max(value, self._cache.get(subject, value))
            self._cache[subject] = value
        return value


@contextmanager
def _token_store() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(REVOCATIONS_DOWN) from exc


def init_token_revocations(app: Flask, client: redis.Redis) -> None:
    app.extensions[REVOCATIONS_KEY] = TokenRevocations(client)


def token_revocations(app: Flask | None = None) -> TokenRevocations:
    return cast(TokenRevocations, (app or current_app).extensions[REVOCATIONS_KEY])


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
            if principal.role != SERVICE and principal.generation < token_revocations().current(
                principal.subject
            ):
                flask_smorest.abort(401, message=REVOKED)
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
