"""Contacts' use cases. Each takes a session and plain values and owns its transaction."""

from __future__ import annotations

import functools
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.auth import (
    ADMIN,
    STAFF_ROLES,
    TokenRevocations,
    hash_password,
    issue_token,
    needs_rehash,
    verify_password,
)
from shared.db import get_or_not_found, utcnow
from shared.errors import Conflict, Invalid, NotFound

from ..models import User
from .history import lock, unique_or_conflict

MIN_PASSWORD_LENGTH = 12
SIGN_IN_CHECKS = 2  # password checks of one sign-in at most (see issue_user_token)
USER_EXISTS = "A user with this email exists already."
NO_ADMIN_LEFT = (
    "This change would leave no active admin, and only an admin can manage users; "
    "make another user an admin first."
)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    role: str
    token_type: str = "Bearer"  # noqa: S105  (the scheme, not a secret)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid({"password": [f"Use at least {MIN_PASSWORD_LENGTH} characters."]})


def _check_role(role: str) -> None:
    if role not in STAFF_ROLES:
        raise Invalid({"role": [f"Must be one of: {', '.join(STAFF_ROLES)}."]})


def create_user(session: Session, *, email: str, role: str, password: str, name: str = "") -> User:
    _check_role(role)
    _check_password(password)
    email = email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(USER_EXISTS)
    user = User(email=email, role=role, name=name, password_hash=hash_password(password))
    with unique_or_conflict(session, USER_EXISTS):
        session.add(user)
    session.commit()
    return user


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.created_at)))


def get_user(session: Session, user_id: uuid.UUID) -> User:
    return get_or_not_found(session, User, user_id, "No such user.")


def update_user(
    session: Session,
    revocations: TokenRevocations,
    user_id: uuid.UUID,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    name: str | None = None,
    password: str | None = None,
) -> User:
    """Change a user. A new role, a new password or a deactivation voids the tokens the user
    holds (see shared.auth.TokenRevocations); a change that would leave no active admin is
    refused (409)."""
    if role is not None:
        _check_role(role)
    if password is not None:
        _check_password(password)
    user, locked = _lock_user(
        session, user_id, with_admins=role is not None or is_active is not None
    )
    new_role = user.role if role is None else role
    new_active = user.is_active if is_active is None else is_active
    if _is_admin(user.role, user.is_active) and not _is_admin(new_role, new_active):
        others = [u for u in locked if u.id != user.id and _is_admin(u.role, u.is_active)]
        if not others:
            raise Conflict(NO_ADMIN_LEFT, code="last_admin")
    revoke = new_role != user.role or (user.is_active and not new_active) or password is not None
    user.role = new_role
    user.is_active = new_active
    if name is not None:
        user.name = name
    if password is not None:
        user.password_hash = hash_password(password)
    if revoke:  # before the commit: if Redis is down, the change is not made either (503)
        revocations.revoke(str(user.id))
    session.commit()
    return user


def _is_admin(role: str, is_active: bool) -> bool:
    return role == ADMIN and is_active


def _lock_user(
    session: Session, user_id: uuid.UUID, *, with_admins: bool
) -> tuple[User, list[User]]:
    """The user, locked for a change and read afresh, and with ``with_admins`` every active
    admin too, all in one statement in id order (see history.lock): two admins demoting each
    other at once take turns, and the second sees that the first is no admin any more.
    An admin made meanwhile may be missed, which can only refuse a change, never let one
    through that leaves no admin."""
    ids = {user_id}
    if with_admins:
        ids.update(session.scalars(select(User.id).where(User.role == ADMIN, User.is_active)))
    locked = lock(session, User, ids)
    user = next((u for u in locked if u.id == user_id), None)
    if user is None:
        raise NotFound("No such user.")
    return user, locked


def issue_user_token(
    session: Session,
    revocations: TokenRevocations,
    *,
    email: str,
    password: str,
    secret: str,
    ttl: timedelta,
) -> IssuedToken | None:
    """A token for valid credentials of an active user; None otherwise.

    A password is checked in every case, against a stand-in hash when there is no such user
    or the account is disabled, so that neither the answer nor the time it takes tells an
    unknown email, a disabled account and a wrong password apart.

    The check (deliberately slow) runs with no row locked and no transaction open: while
    it held the user's row, a flood of wrong passwords for one address queued that user's
    other sign-ins and changes behind it. Only a right password then locks the row (as a
    change locks it) for the moment it takes to issue the token: under the lock the account
    must still be active and its hash still the one checked, and the token carries the role
    and generation of that moment, before a change (and voided by it) or after it. A hash
    that changed in between (a new password, or another sign-in's rehash) is checked once
    more; one that changes again refuses the sign-in."""
    email = email.strip().lower()
    for _ in range(SIGN_IN_CHECKS):
        checked = _checked_credentials(session, email, password)
        if checked is None:
            return None
        user_id, checked_hash = checked
        # A hash of outdated parameters is made anew here too, before the lock.
        rehashed = hash_password(password) if needs_rehash(checked_hash) else None
        user = next(iter(lock(session, User, [user_id])), None)
        if user is None or not user.is_active:
            session.rollback()
            return None
        if user.password_hash != checked_hash:
            session.rollback()
            continue
        if rehashed is not None:
            user.password_hash = rehashed
        user.last_login_at = utcnow()
        generation = revocations.for_new_token(str(user.id))
        session.commit()
        token = issue_token(
            secret,
            subject=str(user.id),
            role=user.role,
            ttl=ttl,
            email=user.email,
            generation=generation,
        )
        return IssuedToken(access_token=token, expires_in=int(ttl.total_seconds()), role=user.role)
    return None


def _checked_credentials(
    session: Session, email: str, password: str
) -> tuple[uuid.UUID, str] | None:
    """The id and hash of the active user with this email if ``password`` is theirs,
    checked after the read's transaction has ended: the check holds nothing."""
    found = session.execute(
        select(User.id, User.password_hash).where(User.email == email, User.is_active)
    ).one_or_none()
    session.rollback()
    valid = verify_password(found.password_hash if found else _dummy_hash(), password)
    return (found.id, found.password_hash) if found is not None and valid else None


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
