"""Newsletter's use cases for lists, subscribers and consent. Each takes a session and plain
values and owns its transaction. Campaigns are in ``campaigns``, digests in ``digest``."""

from __future__ import annotations

import csv
import email
import io
import logging
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.policy import default as default_policy
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.auth import LinkError, load_link, sign_link
from shared.db import get_or_not_found, page_offset, utcnow
from shared.erasure import email_sha256, sql_email_sha256
from shared.errors import Conflict, Gone, Invalid, NotFound
from shared.mail import Mailer, SmtpConfig, address, build_message, has_line_break
from shared.settings import Settings

from . import jobs
from .models import (
    Bounce,
    Campaign,
    ConsentRecord,
    Delivery,
    ErasedAddress,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)

log = logging.getLogger(__name__)

CONFIRM_PURPOSE = "newsletter-confirm"
PREFERENCES_PURPOSE = "newsletter-preferences"
CONFIRM_MAX_AGE = timedelta(days=7)
ERASED_REFUSAL = (
    "This address was erased on request (Art. 17 GDPR) and is not added again by staff. "
    "The person can subscribe again themselves (double opt-in)."
)
PREFERENCES_MAX_AGE = timedelta(days=180)
# Erasures take turns with what staff and events add (see take_turn_with_erasures).
_ERASURES_LOCK = zlib.crc32(b"newsletter-erasures")


def normalise_email(value: str) -> str:
    value = value.strip().lower()
    if has_line_break(value) or not value.isascii():
        raise Invalid({"email": ["Not a valid email address."]})
    try:
        address(value)
    except ValueError as exc:
        raise Invalid({"email": ["Not a valid email address."]}) from exc
    return value


def _check_name(name: str, field: str = "name") -> str:
    if has_line_break(name):
        raise Invalid({field: ["Line breaks are not allowed."]})
    return name.strip()


# Lists


def create_list(session: Session, **values: Any) -> MailingList:
    mailing_list = MailingList(**values)
    session.add(mailing_list)
    _commit_list(session)
    return mailing_list


def _commit_list(session: Session) -> None:
    """Commit a new or renamed list; a name taken already is a 409."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("A list with this name exists already.") from exc


def list_lists(session: Session) -> list[MailingList]:
    return list(session.scalars(select(MailingList).order_by(MailingList.name)))


def get_list(session: Session, list_id: uuid.UUID) -> MailingList:
    return get_or_not_found(session, MailingList, list_id, "No such list.")


def update_list(session: Session, list_id: uuid.UUID, **values: Any) -> MailingList:
    mailing_list = get_list(session, list_id)
    for key, value in values.items():
        setattr(mailing_list, key, value)
    _commit_list(session)
    return mailing_list


def delete_list(session: Session, list_id: uuid.UUID) -> None:
    mailing_list = get_list(session, list_id)
    used = session.execute(
        text("SELECT EXISTS (SELECT 1 FROM campaigns WHERE :l = ANY(list_ids))"),
        {"l": list_id},
    ).scalar()
    if used:
        raise Conflict("Campaigns use this list; it cannot be deleted.")
    session.delete(mailing_list)
    session.commit()


def _existing_lists(session: Session, list_ids: list[uuid.UUID], field: str = "list_ids") -> None:
    if not list_ids:
        raise Invalid({field: ["Choose at least one list."]})
    found = set(session.scalars(select(MailingList.id).where(MailingList.id.in_(list_ids))))
    if len(found) != len(set(list_ids)):
        raise Invalid({field: ["One of the lists does not exist."]})


# Subscribers


def _get_or_create_subscriber(
    session: Session, email_address: str, name: str, organisation_id: uuid.UUID | None = None
) -> Subscriber:
    session.execute(
        insert(Subscriber)
        .values(id=uuid.uuid4(), email=email_address, name=name, organisation_id=organisation_id,
                state="active", token=_token(), created_at=utcnow(), updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["email"])
    )  # fmt: skip
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email == email_address).with_for_update()
    )
    assert subscriber is not None
    if name and not subscriber.name:
        subscriber.name = name
    if organisation_id and not subscriber.organisation_id:
        subscriber.organisation_id = organisation_id
    return subscriber


def _token() -> str:
    from .models import new_token

    return new_token()


def _subscribe(
    session: Session, subscriber: Subscriber, list_ids: list[uuid.UUID], status: str
) -> list[uuid.UUID]:
    """Add subscriptions; returns the lists that still need a confirmation."""
    now = utcnow()
    for list_id in list_ids:
        session.execute(
            insert(Subscription)
            .values(id=uuid.uuid4(), subscriber_id=subscriber.id, list_id=list_id,
                    status=status, created_at=now,
                    confirmed_at=now if status == "confirmed" else None)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
        )  # fmt: skip
    existing = session.scalars(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id, Subscription.list_id.in_(list_ids)
        )
    ).all()
    pending = []
    for subscription in existing:
        if subscription.status == "confirmed":
            continue
        if status == "confirmed":
            subscription.status = "confirmed"
            subscription.confirmed_at = now
            subscription.unsubscribed_at = None
        else:
            if subscription.status == "unsubscribed":
                subscription.status = "unconfirmed"
            pending.append(subscription.list_id)
    return pending


def request_subscription(
    session: Session,
    *,
    email_address: str,
    name: str,
    list_ids: list[uuid.UUID],
    source: str,
    consent_text_version: str,
    ip: str | None,
    user_agent: str | None,
    requested_at: datetime | None = None,
    note: str = "",
    public_only: bool = True,
) -> ConsentRecord | None:
    """Double opt-in, step one: unconfirmed subscriptions, a consent record and (after the
    commit) the confirmation mail. Asking again creates no second subscription; if every
    list is confirmed already, nothing is sent (and the caller learns nothing either way)."""
    email_address = normalise_email(email_address)
    name = _check_name(name)
    _existing_lists(session, list_ids)
    if public_only:
        hidden = session.scalar(
            select(func.count())
            .select_from(MailingList)
            .where(MailingList.id.in_(list_ids), MailingList.public.is_(False))
        )
        if hidden:
            raise Invalid({"list_ids": ["One of the lists does not exist."]})
    subscriber = _get_or_create_subscriber(session, email_address, name)
    pending = _subscribe(session, subscriber, list_ids, "unconfirmed")
    if not pending:
        session.commit()
        return None
    consent = ConsentRecord(
        subscriber_id=subscriber.id,
        list_ids=pending,
        source=source,
        consent_text_version=consent_text_version,
        note=note,
        requested_at=requested_at or utcnow(),
        request_ip=ip,
        request_user_agent=(user_agent or "")[:500] or None,
    )
    session.add(consent)
    session.commit()
    jobs.enqueue("send_confirmation", consent.id)
    return consent


def send_confirmation(session: Session, settings: Settings, consent_id: uuid.UUID) -> bool:
    """The neutral double-opt-in mail (no advertising); sent once per consent record."""
    consent = session.scalar(
        select(ConsentRecord).where(ConsentRecord.id == consent_id).with_for_update()
    )
    if consent is None or consent.mail_sent_at is not None or consent.confirmed_at is not None:
        session.rollback()
        return False
    subscriber = session.get(Subscriber, consent.subscriber_id)
    assert subscriber is not None
    names = session.scalars(
        select(MailingList.name).where(MailingList.id.in_(consent.list_ids))
    ).all()
    token = sign_link(settings.secret_key, CONFIRM_PURPOSE, str(consent.id))
    base = settings.public_url_of("newsletter").rstrip("/")
    url = f"{base}/api/v1/public/subscriptions/confirm?token={token}"
    company = settings.company
    greeting = f"Guten Tag {subscriber.name}," if subscriber.name else "Guten Tag,"
    body = (
        f"{greeting}\n\n"
        f"für diese Adresse wurde der Newsletter „{', '.join(names)}“ bestellt. "
        "Bitte bestätigen Sie die Bestellung mit diesem Link (er gilt sieben Tage):\n\n"
        f"{url}\n\n"
        "Wenn Sie nichts bestellt haben, ignorieren Sie diese Nachricht einfach: "
        "ohne Ihre Bestätigung erhalten Sie keinen Newsletter.\n\n"
        f"-- \n{company.name}\n{company.address}\n{company.register}\n"
        f"Geschäftsführung: {company.managing_directors}\n{company.email}\n"
    )
    message = build_message(
        sender=settings.mail_from,
        to=address(subscriber.email, subscriber.name),
        subject="Bitte bestätigen Sie Ihre Newsletter-Bestellung",
        text=body,
    )
    with Mailer(SmtpConfig.from_url(settings.smtp_url)) as mailer:
        mailer.send(message)
    consent.mail_sent_at = utcnow()
    session.commit()
    return True


def unsent_confirmations(session: Session, older_than: timedelta) -> list[uuid.UUID]:
    ids = list(
        session.scalars(
            select(ConsentRecord.id).where(
                ConsentRecord.mail_sent_at.is_(None),
                ConsentRecord.confirmed_at.is_(None),
                ConsentRecord.source != "import",
                ConsentRecord.requested_at < utcnow() - older_than,
                ConsentRecord.requested_at > utcnow() - CONFIRM_MAX_AGE,
            )
        )
    )
    session.rollback()
    for consent_id in ids:
        jobs.enqueue("send_confirmation", consent_id)
    return ids


def _linked_id(secret: str, purpose: str, token: str, max_age: timedelta, what: str) -> uuid.UUID:
    """The id a signed link carries; 410 when it expired, 404 when it is not valid."""
    try:
        return uuid.UUID(load_link(secret, purpose, token, max_age))
    except LinkError as exc:
        if exc.expired:
            raise Gone(f"Dieser {what} ist abgelaufen.") from exc
        raise NotFound(f"Dieser {what} ist ungültig.") from exc


def consent_from_link(session: Session, secret: str, token: str) -> ConsentRecord:
    what = "Bestätigungslink"
    consent = session.get(
        ConsentRecord, _linked_id(secret, CONFIRM_PURPOSE, token, CONFIRM_MAX_AGE, what)
    )
    if consent is None:
        raise NotFound(f"Dieser {what} ist ungültig.")
    return consent


def confirm_subscription(
    session: Session, secret: str, token: str, ip: str | None, user_agent: str | None
) -> ConsentRecord:
    """Double opt-in, step two: the lists of the consent record become confirmed. A second
    confirmation changes nothing."""
    consent = consent_from_link(session, secret, token)
    if consent.confirmed_at is not None:
        session.rollback()
        return consent
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.id == consent.subscriber_id).with_for_update()
    )
    assert subscriber is not None
    consent.confirmed_at = utcnow()
    consent.confirm_ip = ip
    consent.confirm_user_agent = (user_agent or "")[:500] or None
    _subscribe(session, subscriber, list(consent.list_ids), "confirmed")
    # Their own confirmed request lifts a block they set themselves, a bounce (the link
    # reached them) and an earlier erasure.
    if subscriber.state != "active":
        subscriber.state = "active"
    session.execute(text("DELETE FROM suppressions WHERE email = :e"), {"e": subscriber.email})
    session.execute(
        delete(ErasedAddress).where(ErasedAddress.email_sha256 == email_sha256(subscriber.email))
    )
    session.commit()
    return consent


def create_subscriber(
    session: Session,
    *,
    email: str,
    name: str,
    organisation_id: uuid.UUID | None,
    list_ids: list[uuid.UUID],
    consent: dict[str, Any],
) -> Subscriber:
    """A subscriber added by staff: only with a stated consent source, and not an address
    erased on request."""
    take_turn_with_erasures(session)
    if _erased(session, [email]):
        raise Conflict(ERASED_REFUSAL, code="erased")
    result = import_subscribers(
        session,
        rows=[{"email": email, "name": name, "organisation_id": organisation_id}],
        list_ids=list_ids,
        **consent,
    )
    if result.suppressed:
        raise Conflict("This address is on the suppression list.")
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.lower()))
    assert subscriber is not None
    return subscriber


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    suppressed: int = 0
    invalid: list[dict[str, Any]] | None = None


def parse_csv(data: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(data))
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise Invalid({"csv": ["The first line must name the columns, with at least 'email'."]})
    rows = []
    for raw in reader:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        rows.append({"email": row.get("email", ""), "name": row.get("name", "")})
    return rows


def import_subscribers(
    session: Session,
    *,
    rows: list[dict[str, Any]],
    list_ids: list[uuid.UUID],
    source: str,
    consent_text_version: str,
    note: str,
    consented_at: datetime,
    status: str = "confirmed",
) -> ImportResult:
    """Import with a stated consent source: each subscriber gets a consent record that says
    where the consent came from (e.g. the signed list of a network meeting)."""
    if not note.strip():
        raise Invalid({"note": ["State where the consent comes from."]})
    _existing_lists(session, list_ids)
    valid: list[tuple[str, str, uuid.UUID | None]] = []
    invalid = []
    for index, row in enumerate(rows):
        try:
            valid.append(
                (
                    normalise_email(str(row.get("email", ""))),
                    _check_name(str(row.get("name") or "")),
                    row.get("organisation_id"),
                )
            )
        except Invalid as exc:
            invalid.append({"row": index + 1, "errors": exc.extensions.get("errors")})
    if invalid:
        raise Invalid({"subscribers": [f"Rows not valid: {invalid}"]})
    take_turn_with_erasures(session)
    suppressed = set(
        session.scalars(
            select(Suppression.email).where(Suppression.email.in_([v[0] for v in valid]))
        )
    ) | _erased(session, [v[0] for v in valid])
    result = ImportResult(invalid=[])
    now = utcnow()
    for email_address, name, organisation_id in valid:
        if email_address in suppressed:
            result.suppressed += 1
            continue
        existed = session.scalar(select(Subscriber.id).where(Subscriber.email == email_address))
        subscriber = _get_or_create_subscriber(session, email_address, name, organisation_id)
        _subscribe(session, subscriber, list_ids, status)
        session.add(
            ConsentRecord(
                subscriber_id=subscriber.id,
                list_ids=list_ids,
                source=source,
                consent_text_version=consent_text_version,
                note=note,
                requested_at=consented_at,
                confirmed_at=consented_at if status == "confirmed" else None,
                mail_sent_at=now,
            )
        )
        if existed:
            result.updated += 1
        else:
            result.created += 1
    session.commit()
    return result


def list_subscribers(
    session: Session,
    *,
    page: int,
    per_page: int,
    list_id: uuid.UUID | None = None,
    status: str | None = None,
    q: str | None = None,
) -> tuple[list[Subscriber], int]:
    stmt = select(Subscriber)
    if list_id is not None:
        sub = select(Subscription.subscriber_id).where(Subscription.list_id == list_id)
        if status:
            sub = sub.where(Subscription.status == status)
        stmt = stmt.where(Subscriber.id.in_(sub))
    if q:
        stmt = stmt.where(Subscriber.email.contains(q.strip().lower(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(
        stmt.order_by(Subscriber.email).limit(per_page).offset(page_offset(page, per_page))
    ).all()
    return list(items), total


def get_subscriber(session: Session, subscriber_id: uuid.UUID) -> Subscriber:
    return get_or_not_found(session, Subscriber, subscriber_id, "No such subscriber.")


def subscriber_details(session: Session, subscriber_id: uuid.UUID) -> dict[str, Any]:
    subscriber = get_subscriber(session, subscriber_id)
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.subscriber_id == subscriber.id)
    ).all()
    consents = session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == subscriber.id)
        .order_by(ConsentRecord.requested_at)
    ).all()
    return {
        **{c: getattr(subscriber, c) for c in ("id", "email", "name", "organisation_id", "state")},
        "created_at": subscriber.created_at,
        "subscriptions": list(subscriptions),
        "consents": list(consents),
    }


def update_subscriber(session: Session, subscriber_id: uuid.UUID, **values: Any) -> Subscriber:
    subscriber = get_subscriber(session, subscriber_id)
    if "name" in values:
        values["name"] = _check_name(values["name"])
    state = values.pop("state", None)
    for key, value in values.items():
        setattr(subscriber, key, value)
    if state is not None and state != subscriber.state:
        subscriber.state = state
        if state == "blocklisted":
            _block(session, subscriber, "blocklisted")
    session.commit()
    return subscriber


def delete_subscriber(session: Session, subscriber_id: uuid.UUID) -> None:
    """Erasure: the data goes; the address stays suppressed so that no import brings it back."""
    subscriber = get_subscriber(session, subscriber_id)
    session.execute(
        insert(Suppression)
        .values(email=subscriber.email, reason="erasure", created_at=utcnow())
        .on_conflict_do_update(index_elements=["email"], set_={"reason": "erasure"})
    )
    session.delete(subscriber)
    session.commit()


def take_turn_with_erasures(session: Session, *, erasing: bool = False) -> None:
    """A lock until the transaction ends: an erasure holds it alone, a staff add (one
    address or an import of thousands) or a training sign-up's request shares it before it
    looks at the erased hashes. A subscriber added at the moment its address is erased is
    then there before the erasure looks for it (and erased with the rest), or sees the
    stored hash afterwards; never stored beside it. One lock for every address rather than
    one per address (as contacts takes them): an import would hold a lock per row, more
    than PostgreSQL's lock table has room for, and erasures are rare and short, so adds
    seldom wait for one, and briefly."""
    take = func.pg_advisory_xact_lock if erasing else func.pg_advisory_xact_lock_shared
    session.execute(select(take(_ERASURES_LOCK)))


def _erased(session: Session, addresses: list[str]) -> set[str]:
    """The addresses among these that were erased on request (Art. 17 GDPR)."""
    digests = {email_sha256(address): address for address in addresses}
    found = session.scalars(
        select(ErasedAddress.email_sha256).where(ErasedAddress.email_sha256.in_(digests))
    )
    return {digests[digest] for digest in found}


def erased_since(session: Session, address: str, requested_at: str | None) -> bool:
    """Whether the address was erased on request after a request made at ``requested_at``
    (ISO 8601; an unknown time counts as before)."""
    erased = session.get(ErasedAddress, email_sha256(address))
    if erased is None:
        return False
    try:
        at = datetime.fromisoformat(requested_at) if requested_at else None
    except (TypeError, ValueError):
        at = None
    return at is None or at.tzinfo is None or at <= erased.created_at


def erase_address(session: Session, digest: str) -> None:
    """Erase what the newsletter holds of an address erased on request (Art. 17 GDPR), in
    the caller's transaction, and keep its hash so that staff cannot add it again.

    The subscribers with it go with their subscriptions and consent records (the proof of
    a consent that is withdrawn with the data); their bounces and the address's
    suppressions go too. Their campaign mails stay, for the campaigns' counts, without
    subscriber, address, name, organisation or token; those not sent yet are skipped.
    Matching hashes every address (a whole read of the tables: erasures are rare). Doing it
    again finds nothing more to erase."""
    take_turn_with_erasures(session, erasing=True)
    subscriber_ids = list(
        session.scalars(
            select(Subscriber.id)
            .where(sql_email_sha256(Subscriber.email) == digest)
            .with_for_update()
        )
    )
    for subscriber_id in subscriber_ids:
        _skip_pending(session, subscriber_id, everything=True)
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id.in_(subscriber_ids))
        .values(subscriber_id=None, email="", name="", organisation="", token="", last_error=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Bounce)
        .where(
            or_(
                sql_email_sha256(Bounce.email) == digest,
                Bounce.subscriber_id.in_(subscriber_ids),
            )
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Suppression)
        .where(sql_email_sha256(Suppression.email) == digest)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Subscriber)  # with subscriptions and consent records (ON DELETE CASCADE)
        .where(Subscriber.id.in_(subscriber_ids))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        insert(ErasedAddress)
        .values(email_sha256=digest, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["email_sha256"])
    )


def _skip_pending(db: Session | Connection, subscriber_id: uuid.UUID, everything: bool) -> None:
    """Mails not yet sent to someone who left: skipped (for a list, only where no other
    confirmed list of the campaign still holds them)."""
    still = (
        ""
        if everything
        else " AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = :s"
        " AND x.status = 'confirmed' AND x.list_id = ANY(c.list_ids))"
    )
    db.execute(
        text(
            "UPDATE deliveries d SET state = 'skipped', lease_until = NULL"  # noqa: S608
            " FROM campaigns c"
            " WHERE c.id = d.campaign_id AND d.subscriber_id = :s"
            f" AND d.state IN ('queued', 'retry', 'sending'){still}"
        ),
        {"s": subscriber_id},
    )


def _block(session: Session, subscriber: Subscriber, reason: str) -> None:
    now = utcnow()
    session.execute(
        text(
            "UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = :now"
            " WHERE subscriber_id = :s AND status <> 'unsubscribed'"
        ),
        {"s": subscriber.id, "now": now},
    )
    session.execute(
        insert(Suppression)
        .values(email=subscriber.email, reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
    )
    _skip_pending(session, subscriber.id, everything=True)


# Public pages: one-click unsubscribe and preferences.


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # as models.new_token makes them


def subscriber_by_token(session: Session, token: str) -> Subscriber:
    subscriber = None
    if _TOKEN.fullmatch(token):
        subscriber = session.scalar(select(Subscriber).where(Subscriber.token == token))
    if subscriber is None:
        raise NotFound("Dieser Abmeldelink ist ungültig.")
    return subscriber


def one_click_unsubscribe(session: Session, campaign_id: uuid.UUID, token: str) -> Subscriber:
    """RFC 8058: leave the lists the campaign went to. Harmless when repeated."""
    subscriber = subscriber_by_token(session, token)
    list_ids = session.execute(
        text("SELECT list_ids FROM campaigns WHERE id = :c"), {"c": campaign_id}
    ).scalar()
    if list_ids is None:
        raise NotFound("Dieser Abmeldelink ist ungültig.")
    _unsubscribe_lists(session, subscriber, list(list_ids))
    session.execute(
        text(
            "UPDATE deliveries SET unsubscribed_at = coalesce(unsubscribed_at, now())"
            " WHERE campaign_id = :c AND subscriber_id = :s"
        ),
        {"c": campaign_id, "s": subscriber.id},
    )
    session.commit()
    return subscriber


# The subject that the List-Unsubscribe mailto of every campaign mail asks for:
# unsubscribe-{campaign}-{token} (mails of earlier versions: unsubscribe-{token}).
_UNSUBSCRIBE_SUBJECT = re.compile(rf"\bunsubscribe-(?:([0-9a-f]{{32}})-)?({_TOKEN.pattern})")


def unsubscribe_by_mail(session: Session, raw: bytes) -> Subscriber:
    """A mail to the ``mailto:`` of List-Unsubscribe (RFC 2369), subject
    ``unsubscribe-{campaign}-{token}`` (a reply prefix is fine): as the one-click link, the
    token's subscriber leaves the campaign's lists and counts as unsubscribed from it. A
    subject without a known campaign leaves every list. Harmless when repeated."""
    message = email.message_from_bytes(raw, policy=default_policy)
    found = _UNSUBSCRIBE_SUBJECT.search(str(message.get("Subject") or ""))
    if found is None:
        raise Invalid({"body": ["No unsubscribe request (subject unsubscribe-…) in this mail."]})
    campaign, token = found.group(1), found.group(2)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.token == token))
    if subscriber is None:
        raise NotFound("No subscriber has the token of this unsubscribe request.")
    if campaign and session.get(Campaign, uuid.UUID(campaign)) is not None:
        return one_click_unsubscribe(session, uuid.UUID(campaign), token)
    list_ids = session.scalars(
        select(Subscription.list_id).where(Subscription.subscriber_id == subscriber.id)
    )
    _unsubscribe_lists(session, subscriber, list(list_ids))
    session.commit()
    return subscriber


def _unsubscribe_lists(session: Session, subscriber: Subscriber, list_ids: list[uuid.UUID]) -> None:
    session.execute(
        text(
            "UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = now()"
            " WHERE subscriber_id = :s AND list_id = ANY(:l) AND status <> 'unsubscribed'"
        ),
        {"s": subscriber.id, "l": list_ids},
    )
    _skip_pending(session, subscriber.id, everything=False)


def subscriber_from_preferences_link(session: Session, secret: str, token: str) -> Subscriber:
    subscriber = session.get(
        Subscriber, _linked_id(secret, PREFERENCES_PURPOSE, token, PREFERENCES_MAX_AGE, "Link")
    )
    if subscriber is None:
        raise NotFound("Dieser Link ist ungültig.")
    return subscriber


def preferences(session: Session, secret: str, token: str) -> dict[str, Any]:
    subscriber = subscriber_from_preferences_link(session, secret, token)
    confirmed = set(
        session.scalars(
            select(Subscription.list_id).where(
                Subscription.subscriber_id == subscriber.id, Subscription.status == "confirmed"
            )
        )
    )
    lists = [
        {"id": str(item.id), "name": item.name, "checked": item.id in confirmed}
        for item in list_lists(session)
        if item.public or item.id in confirmed
    ]
    session.rollback()
    return {"name": subscriber.name, "email": subscriber.email, "lists": lists}


def save_preferences(
    session: Session,
    secret: str,
    token: str,
    *,
    name: str | None,
    list_ids: list[uuid.UUID],
    unsubscribe_all: bool,
    ip: str | None,
    user_agent: str | None,
) -> Subscriber:
    """The preferences form: name and lists. Lists left out are unsubscribed, the others
    stay as they are; lists added here are confirmed at once (the signed link in the
    person's own mail proves the address); unsubscribe-from-all blocks every list."""
    subscriber = subscriber_from_preferences_link(session, secret, token)
    if unsubscribe_all:
        subscriber.state = "blocklisted"
        _block(session, subscriber, "unsubscribed_all")
        session.commit()
        return subscriber
    if name is not None:
        subscriber.name = _check_name(name)[:200]
    offered = {i.id for i in list_lists(session) if i.public}
    current = set(
        session.scalars(
            select(Subscription.list_id).where(
                Subscription.subscriber_id == subscriber.id, Subscription.status == "confirmed"
            )
        )
    )
    wanted = {i for i in list_ids if i in offered or i in current}
    leave = current - wanted
    join = wanted - current
    if leave:
        _unsubscribe_lists(session, subscriber, list(leave))
    if join:
        now = utcnow()
        _subscribe(session, subscriber, list(join), "confirmed")
        session.add(
            ConsentRecord(
                subscriber_id=subscriber.id,
                list_ids=list(join),
                source="form",
                consent_text_version="preferences",
                note="Auf der Einstellungsseite gewählt (Link aus einer Mail an die Adresse).",
                requested_at=now,
                request_ip=ip,
                request_user_agent=user_agent,
                confirmed_at=now,
                confirm_ip=ip,
                confirm_user_agent=user_agent,
                mail_sent_at=now,
            )
        )
    session.commit()
    return subscriber


# Bounces


def record_bounce_rows(
    db: Session | Connection,
    *,
    email: str,
    campaign_id: uuid.UUID | None,
    hard: bool,
    status: str,
    diagnostic: str,
    source: str,
) -> None:
    """The bounce, and for a hard one: the subscriber bounced, suppressed, nothing pending.
    Nothing for an address erased on request without a subscriber now (a mail sent before
    the erasure, bounced after it): storing it would keep the address again."""
    subscriber_id = db.execute(
        text("SELECT id FROM subscribers WHERE email = :e"), {"e": email}
    ).scalar()
    if (
        subscriber_id is None
        and db.execute(
            select(ErasedAddress.email_sha256).where(
                ErasedAddress.email_sha256 == email_sha256(email)
            )
        ).first()
    ):
        return
    db.execute(
        text(
            "INSERT INTO bounces (id, email, subscriber_id, campaign_id, hard, status,"
            " diagnostic, source, received_at)"
            " VALUES (:id, :e, :s, :c, :h, :st, :d, :src, now())"
        ),
        {
            "id": uuid.uuid4(),
            "e": email,
            "s": subscriber_id,
            "c": campaign_id,
            "h": hard,
            "st": status[:20],
            "d": diagnostic[:2000],
            "src": source,
        },
    )
    if hard:
        db.execute(
            text(
                "INSERT INTO suppressions (email, reason, created_at)"
                " VALUES (:e, 'hard_bounce', now()) ON CONFLICT (email) DO NOTHING"
            ),
            {"e": email},
        )
        if subscriber_id is not None:
            db.execute(
                text("UPDATE subscribers SET state = 'bounced' WHERE id = :s AND state = 'active'"),
                {"s": subscriber_id},
            )
            _skip_pending(db, subscriber_id, everything=True)


@dataclass
class BounceReport:
    email: str
    hard: bool
    status: str
    diagnostic: str


def parse_dsn(raw: bytes) -> list[BounceReport]:
    """The failed recipients of a delivery status notification (RFC 3464)."""
    message = email.message_from_bytes(raw, policy=default_policy)
    reports = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks: list[Any] = payload if isinstance(payload, list) else []
        for block in blocks[1:]:  # the first block is about the message
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            action = str(block.get("Action") or "").strip().lower()
            status = str(block.get("Status") or "").strip()
            if not recipient or action not in ("failed", "delayed"):
                continue
            addr = recipient.split(";", 1)[-1].strip().strip("<>")
            if "\x00" in addr:  # no address of ours
                continue
            reports.append(
                BounceReport(
                    email=addr.lower(),
                    hard=action == "failed" and status.startswith("5"),
                    status=status.replace("\x00", ""),
                    diagnostic=str(block.get("Diagnostic-Code") or "").replace("\x00", ""),
                )
            )
    return reports


def record_bounces(
    session: Session,
    reports: list[BounceReport],
    source: str,
    campaign_id: uuid.UUID | None = None,
) -> int:
    if not reports:
        raise Invalid({"body": ["No failed recipient found in this notification."]})
    for report in reports:
        record_bounce_rows(
            session,
            email=report.email,
            campaign_id=campaign_id,
            hard=report.hard,
            status=report.status,
            diagnostic=report.diagnostic,
            source=source,
        )
    session.commit()
    return len(reports)


def list_suppressions(session: Session) -> list[Suppression]:
    return list(session.scalars(select(Suppression).order_by(Suppression.created_at.desc())))
