"""Campaign use cases: compose, test, schedule, send, pause, resume, cancel, progress, and
the sending loop that the Celery tasks run. Each use case owns its transaction."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from shared.auth import sign_link
from shared.db import page_offset, utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.mail import SmtpConfig, address, has_line_break
from shared.problems import ServiceUnavailable
from shared.settings import Settings

from . import jobs, rendering
from .delivery import (
    Aborted,
    Claimed,
    DeliveryConfig,
    Outgoing,
    SmtpPool,
    SmtpRefused,
    claim,
    engine_for,
    mark_sent,
    pool_for,
    rate_cap_for,
)
from .models import Campaign, Delivery, MailingList

log = logging.getLogger(__name__)

EDITABLE = ("draft", "scheduled")
PREFERENCES_PURPOSE = "newsletter-preferences"
PREPARE_BATCH = 5000


def _check_content(values: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    for field in ("subject", "preheader", "name"):
        value = values.get(field)
        if value is not None and has_line_break(value):
            errors[field] = ["Line breaks are not allowed."]
    if "subject" in values and not (values["subject"] or "").strip():
        errors["subject"] = ["A subject is required."]
    if values.get("body_format") == "html" and rendering.unsafe_html(values.get("body") or ""):
        errors["body"] = ["Scripts, event handlers and embedded content are not allowed."]
    if "list_ids" in values and not values["list_ids"]:
        errors["list_ids"] = ["Choose at least one list."]
    if errors:
        raise Invalid(errors)


def _check_lists(session: Session, list_ids: list[uuid.UUID]) -> None:
    found = set(session.scalars(select(MailingList.id).where(MailingList.id.in_(list_ids))))
    missing = [str(i) for i in list_ids if i not in found]
    if missing:
        raise Invalid({"list_ids": [f"No such list: {', '.join(missing)}."]})


def create_campaign(session: Session, **values: Any) -> Campaign:
    values.setdefault("body_format", "markdown")
    _check_content(values)
    _check_lists(session, values["list_ids"])
    campaign = Campaign(**values)
    session.add(campaign)
    session.commit()
    return campaign


def get_campaign(session: Session, campaign_id: uuid.UUID, *, lock: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        stmt = stmt.with_for_update()
    campaign = session.scalar(stmt)
    if campaign is None:
        raise NotFound("No such campaign.")
    return campaign


def list_campaigns(session: Session, page: int, per_page: int) -> tuple[list[Campaign], int]:
    total = session.scalar(select(func.count()).select_from(Campaign)) or 0
    items = session.scalars(
        select(Campaign)
        .order_by(Campaign.created_at.desc())
        .limit(per_page)
        .offset(page_offset(page, per_page))
    ).all()
    return list(items), total


def update_campaign(session: Session, campaign_id: uuid.UUID, **values: Any) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state not in EDITABLE:
        raise Conflict(f"A campaign that is {campaign.state} cannot be changed.")
    merged = {"body_format": campaign.body_format, "body": campaign.body, **values}
    _check_content(merged)
    if "list_ids" in values:
        _check_lists(session, values["list_ids"])
    for key, value in values.items():
        setattr(campaign, key, value)
    session.commit()
    return campaign


def delete_campaign(session: Session, campaign_id: uuid.UUID) -> None:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state not in ("draft", "scheduled", "cancelled"):
        raise Conflict(f"A campaign that is {campaign.state} cannot be deleted.")
    session.delete(campaign)
    session.commit()


# Recipients: confirmed on one of the lists, active, not suppressed, optionally narrowed by
# the organisation projection.


def _recipient_filter(campaign: Campaign) -> tuple[str, dict[str, Any]]:
    where = [
        "s.state = 'active'",
        "EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id"
        " AND x.status = 'confirmed' AND x.list_id = ANY(:lists))",
        "NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email = s.email)",
    ]
    params: dict[str, Any] = {"lists": list(campaign.list_ids)}
    segment = campaign.segment or {}
    if segment.get("districts"):
        where.append("o.district = ANY(:districts)")
        params["districts"] = list(segment["districts"])
    if segment.get("kinds"):
        where.append("o.kind = ANY(:kinds)")
        params["kinds"] = list(segment["kinds"])
    if segment.get("needs"):
        where.append("o.needs && CAST(:needs AS varchar(100)[])")
        params["needs"] = list(segment["needs"])
    if any(segment.get(k) for k in ("districts", "kinds", "needs")):
        where.append("NOT o.archived")
    return " AND ".join(where), params


def count_recipients(session: Session, campaign: Campaign) -> int:
    where, params = _recipient_filter(campaign)
    return int(
        session.execute(
            text(
                "SELECT count(*) FROM subscribers s"  # noqa: S608  (fixed SQL, bound values)
                f" LEFT JOIN organisations o ON o.id = s.organisation_id WHERE {where}"
            ),
            params,
        ).scalar_one()
    )


def start_campaign(session: Session, campaign_id: uuid.UUID) -> Campaign:
    """Send now: 409 if it is sending or done, 422 if nobody would receive it."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state not in EDITABLE:
        raise Conflict(f"The campaign is {campaign.state}; it cannot be sent again.")
    if count_recipients(session, campaign) == 0:
        raise Invalid({"list_ids": ["Nobody on these lists would receive this campaign."]})
    campaign.state = "sending"
    campaign.started_at = utcnow()
    campaign.scheduled_at = None
    session.commit()
    jobs.enqueue("prepare_campaign", campaign.id)
    return campaign


def schedule_campaign(session: Session, campaign_id: uuid.UUID, at: datetime) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state not in EDITABLE:
        raise Conflict(f"The campaign is {campaign.state}; it cannot be scheduled.")
    if at.tzinfo is None:
        raise Invalid({"at": ["Give a time with an offset, e.g. 2026-12-07T09:00:00+01:00."]})
    if at <= utcnow():
        raise Invalid({"at": ["The time must be in the future."]})
    if count_recipients(session, campaign) == 0:
        raise Invalid({"list_ids": ["Nobody on these lists would receive this campaign."]})
    campaign.state = "scheduled"
    campaign.scheduled_at = at.astimezone(UTC)
    session.commit()
    return campaign


def pause_campaign(session: Session, campaign_id: uuid.UUID) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state != "sending":
        raise Conflict(f"Only a sending campaign can be paused; this one is {campaign.state}.")
    campaign.state = "paused"
    campaign.paused_reason = "Von Hand angehalten."
    session.commit()
    return campaign


def resume_campaign(session: Session, campaign_id: uuid.UUID) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state != "paused":
        raise Conflict(f"Only a paused campaign can be resumed; this one is {campaign.state}.")
    campaign.state = "sending"
    campaign.paused_reason = None
    campaign.error_streak = 0
    session.commit()
    jobs.enqueue("prepare_campaign", campaign.id)
    return campaign


def cancel_campaign(session: Session, campaign_id: uuid.UUID) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.state in ("sent", "cancelled"):
        raise Conflict(f"The campaign is {campaign.state} already.")
    campaign.state = "cancelled"
    campaign.finished_at = utcnow()
    session.execute(
        text(
            "UPDATE deliveries SET state = 'cancelled', lease_until = NULL"
            " WHERE campaign_id = :c AND state IN ('queued', 'retry', 'sending')"
        ),
        {"c": campaign.id},
    )
    session.commit()
    return campaign


def prepare_campaign(
    session: Session, campaign_id: uuid.UUID, parallelism: int, batch: int = PREPARE_BATCH
) -> int:
    """Write the delivery rows in keyset batches by subscriber id (resumable: the last id
    written is kept, and a row written twice is ignored), starting senders after the first
    batch and again at the end. Returns how many rows this run wrote."""
    campaign = get_campaign(session, campaign_id)
    if campaign.state != "sending":
        session.rollback()
        return 0
    if campaign.prepared:
        session.rollback()
        _start_senders(campaign.id, parallelism)
        return 0
    where, params = _recipient_filter(campaign)
    after = campaign.prepared_up_to or uuid.UUID(int=0)
    written = 0
    first = True
    while True:
        row = session.execute(
            text(
                "WITH batch AS ("  # noqa: S608  (fixed SQL fragments, bound values)
                " SELECT s.id, s.email, s.name, s.token, coalesce(o.name, '') AS org"
                " FROM subscribers s LEFT JOIN organisations o ON o.id = s.organisation_id"
                f" WHERE s.id > :after AND {where} ORDER BY s.id LIMIT :n),"
                " ins AS (INSERT INTO deliveries"
                " (campaign_id, subscriber_id, email, name, organisation, token, state, attempts)"
                " SELECT :c, id, email, name, org, token, 'queued', 0 FROM batch"
                " ON CONFLICT (campaign_id, subscriber_id) DO NOTHING RETURNING 1)"
                " SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1),"
                " (SELECT count(*) FROM batch), (SELECT count(*) FROM ins)"
            ),
            {**params, "after": after, "n": batch, "c": campaign.id},
        ).one()
        last, seen, inserted = row
        if not seen:
            break
        written += int(inserted)
        after = last
        session.execute(
            text("UPDATE campaigns SET prepared_up_to = :a WHERE id = :c"),
            {"a": after, "c": campaign.id},
        )
        session.commit()
        if first:
            _start_senders(campaign.id, parallelism)
            first = False
    total = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign.id)
    )
    session.execute(
        text("UPDATE campaigns SET prepared = true, total = :t WHERE id = :c"),
        {"t": total or 0, "c": campaign.id},
    )
    session.commit()
    _start_senders(campaign.id, parallelism)
    return written


def _start_senders(campaign_id: uuid.UUID, parallelism: int) -> None:
    for _ in range(max(1, parallelism)):
        jobs.enqueue("send_campaign", campaign_id)


# The sending loop.


@dataclass
class RunOutcome:
    sent: int = 0
    errors: int = 0
    retry_in: float | None = None  # seconds until the next retry is due, if that is all left


_compiled_lock = threading.Lock()
_compiled: dict[tuple[uuid.UUID, datetime], rendering.CompiledCampaign] = {}


def _compiled_for(
    conn: Connection, settings: Settings, campaign_id: uuid.UUID
) -> rendering.CompiledCampaign | None:
    row = conn.execute(
        text(
            "SELECT subject, preheader, body, body_format, body_text, updated_at, state"
            " FROM campaigns WHERE id = :c"
        ),
        {"c": campaign_id},
    ).first()
    conn.commit()
    if row is None or row.state != "sending":
        return None
    key = (campaign_id, row.updated_at)
    with _compiled_lock:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled = rendering.compile_campaign(
                campaign_id=campaign_id,
                sender=settings.mail_from,
                subject=row.subject,
                preheader=row.preheader,
                body=row.body,
                body_format=row.body_format,
                explicit_text=row.body_text,
                company=settings.company,
            )
            _compiled.clear()  # keep one campaign per process: memory stays flat
            _compiled[key] = compiled
        return compiled


def links(
    settings: Settings, campaign_id: uuid.UUID, subscriber_id: uuid.UUID | str, token: str
) -> tuple[str, str]:
    base = settings.public_url_of("newsletter").rstrip("/")
    unsubscribe = f"{base}/api/v1/public/unsubscribe/{campaign_id}/{token}"
    signed = sign_link(settings.secret_key, PREFERENCES_PURPOSE, str(subscriber_id))
    return unsubscribe, f"{base}/api/v1/public/preferences?token={signed}"


def run_campaign(
    settings: Settings, campaign_id: uuid.UUID, config: DeliveryConfig | None = None
) -> RunOutcome:
    """Claim and send chunks until nothing is left to claim (or the campaign stops)."""
    config = config or DeliveryConfig.from_env()
    pool = pool_for(settings, config)
    cap = rate_cap_for(settings, config)
    sender = address(settings.mail_from).addr_spec
    claim_id = uuid.uuid4().hex
    outcome = RunOutcome()
    with engine_for(settings, config).connect() as conn:
        compiled = _compiled_for(conn, settings, campaign_id)
        if compiled is None:
            return outcome
        while True:
            rows = claim(conn, campaign_id, claim_id, config)
            if not rows:
                outcome.retry_in = _finish(conn, campaign_id)
                return outcome
            cap.acquire(len(rows))  # one Redis round trip per chunk, not per mail
            sent = errors = 0
            for start in range(0, len(rows), pool.size):
                group = rows[start : start + pool.size]
                results = _send_group(
                    conn, settings, pool, compiled, campaign_id, claim_id, group, sender, config
                )
                sent += results.count("sent")
                errors += results.count("error")
            outcome.sent += sent
            outcome.errors += errors
            if not _after_chunk(conn, campaign_id, sent, errors, config):
                return outcome


def _send_group(
    conn: Connection,
    settings: Settings,
    pool: SmtpPool,
    compiled: rendering.CompiledCampaign,
    campaign_id: uuid.UUID,
    claim_id: str,
    rows: list[Claimed],
    sender: str,
    config: DeliveryConfig,
) -> list[str]:
    items: list[Outgoing] = []
    for row in rows:
        unsubscribe, preferences = links(settings, campaign_id, row.subscriber_id, row.token)
        rendered = compiled.render(
            key=f"{campaign_id.hex}.{row.id}",
            email=row.email,
            name=row.name,
            organisation=row.organisation,
            token=row.token,
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
        )
        items.append(Outgoing(row.id, row.email, rendered.data))
    try:
        pool.send_group(sender, items, lambda keys: mark_sent(conn, claim_id, keys))
    except Exception:
        # The database failed at the commit: the mails were abandoned before their dot and
        # the rows stay "sending" until their lease runs out; then they are sent again.
        conn.rollback()
        raise
    results = []
    for row, item in zip(rows, items, strict=True):
        error = item.error
        if error is None:
            results.append("sent")
        elif isinstance(error, Aborted):
            results.append("skipped")
        elif isinstance(error, SmtpRefused):
            if error.permanent:
                _record_bounce(conn, row, claim_id, campaign_id, error)
                results.append("bounced" if error.hard else "error")
            else:
                _record_retry(conn, row, claim_id, str(error), config)
                results.append("error")
        elif item.committed:
            # The wire broke after the row was committed and the dot was written: the
            # server most likely has the mail; we keep it as sent (never send twice).
            log.warning("no reply after the final dot for delivery %s: %s", row.id, error)
            results.append("sent")
        else:
            _record_retry(conn, row, claim_id, f"{error.__class__.__name__}: {error}", config)
            results.append("error")
    return results


def _record_retry(
    conn: Connection, row: Claimed, claim_id: str, error: str, config: DeliveryConfig
) -> None:
    """The error kept for a retry, or as the last one. A server's reply often quotes the
    recipient's address: a mail in flight while its address is erased (erase_address
    empties the delivery's address) keeps no reply, or the address would be stored again."""
    final = row.attempts >= config.max_attempts
    conn.execute(
        text(
            "UPDATE deliveries SET state = :state, due_at = now() + make_interval(secs => :wait),"
            " last_error = CASE WHEN email = '' THEN NULL ELSE :err END, lease_until = NULL"
            " WHERE id = :id AND claimed_by = :claim"
            " AND state IN ('sending', 'sent')"
        ),
        {
            "state": "failed" if final else "retry",
            "wait": config.backoff(row.attempts).total_seconds(),
            "err": error[:500],
            "id": row.id,
            "claim": claim_id,
        },
    )
    conn.commit()


def _record_bounce(
    conn: Connection, row: Claimed, claim_id: str, campaign_id: uuid.UUID, refusal: SmtpRefused
) -> None:
    from .services import record_bounce_rows

    conn.execute(
        text(
            "UPDATE deliveries SET state = 'bounced',"
            " last_error = CASE WHEN email = '' THEN NULL ELSE :err END,"  # see _record_retry
            " lease_until = NULL WHERE id = :id AND claimed_by = :claim"
        ),
        {"err": str(refusal)[:500], "id": row.id, "claim": claim_id},
    )
    record_bounce_rows(
        conn,
        email=row.email,
        campaign_id=campaign_id,
        hard=refusal.hard,
        status=str(refusal.code),
        diagnostic=refusal.message,
        source="smtp",
    )
    conn.commit()


def _after_chunk(
    conn: Connection, campaign_id: uuid.UUID, sent: int, errors: int, config: DeliveryConfig
) -> bool:
    """Keep the error streak and the progress stamp; False if the campaign stopped."""
    if errors and not sent:
        state = conn.execute(
            text(
                "UPDATE campaigns SET error_streak = error_streak + :n,"
                " state = CASE WHEN error_streak + :n >= :max THEN 'paused' ELSE state END,"
                " paused_reason = CASE WHEN error_streak + :n >= :max"
                "   THEN 'Automatisch angehalten: zu viele Fehler beim Versand.'"
                "   ELSE paused_reason END"
                " WHERE id = :c RETURNING state"
            ),
            {"n": errors, "max": config.max_error_streak, "c": campaign_id},
        ).scalar()
    else:
        state = conn.execute(
            text(
                "UPDATE campaigns SET error_streak = 0, last_progress_at = now()"
                " WHERE id = :c AND (error_streak <> 0 OR last_progress_at IS NULL"
                "   OR last_progress_at < now() - interval '2 seconds') RETURNING state"
            ),
            {"c": campaign_id},
        ).scalar()
        if state is None:
            state = conn.execute(
                text("SELECT state FROM campaigns WHERE id = :c"), {"c": campaign_id}
            ).scalar()
    conn.commit()
    return state == "sending"


def _finish(conn: Connection, campaign_id: uuid.UUID) -> float | None:
    """Mark the campaign sent when nothing is pending; else the seconds to the next retry."""
    row = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE state IN ('queued', 'sending')),"
            " count(*) FILTER (WHERE state = 'retry'),"
            " extract(epoch FROM min(due_at) FILTER (WHERE state = 'retry') - now())"
            " FROM deliveries WHERE campaign_id = :c"
        ),
        {"c": campaign_id},
    ).one()
    active, retrying, wait = row
    if not active and not retrying:
        conn.execute(
            text(
                "UPDATE campaigns SET state = 'sent', finished_at = now(), last_progress_at = now()"
                " WHERE id = :c AND state = 'sending' AND prepared"
            ),
            {"c": campaign_id},
        )
        conn.commit()
        return None
    conn.commit()
    if not active and retrying:
        return max(0.5, float(wait or 0))
    return None


# Progress and stats.


def progress(session: Session, campaign_id: uuid.UUID) -> dict[str, Any]:
    campaign = get_campaign(session, campaign_id)
    counts = dict(
        session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.campaign_id == campaign.id)
            .group_by(Delivery.state)
        ).all()
    )
    now = utcnow()
    window = 30
    recent = (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.campaign_id == campaign.id,
                Delivery.state == "sent",
                Delivery.sent_at >= now - timedelta(seconds=window),
            )
        )
        or 0
    )
    total = max(campaign.total, sum(counts.values()))
    sent = counts.get("sent", 0)
    pending = sum(counts.get(s, 0) for s in ("queued", "sending", "retry"))
    rate = recent / window
    estimated_end = None
    if campaign.state == "sending" and rate > 0:
        estimated_end = now + timedelta(seconds=pending / rate)
    unsubscribed = (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == campaign.id, Delivery.unsubscribed_at.is_not(None))
        )
        or 0
    )
    session.rollback()
    return {
        "campaign_id": campaign.id,
        "state": campaign.state,
        "paused_reason": campaign.paused_reason,
        "prepared": campaign.prepared,
        "total": total,
        "sent": sent,
        "pending": pending,
        "failed": counts.get("failed", 0),
        "bounced": counts.get("bounced", 0),
        "skipped": counts.get("skipped", 0) + counts.get("cancelled", 0),
        "unsubscribed": unsubscribed,
        "rate_per_second": round(rate, 2),
        "estimated_end": estimated_end,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
    }


def test_send(
    session: Session, settings: Settings, campaign_id: uuid.UUID, email: str, name: str
) -> None:
    """One mail of the campaign to one address, marked as a test; changes nothing."""
    campaign = get_campaign(session, campaign_id)
    session.rollback()
    compiled = rendering.compile_campaign(
        campaign_id=campaign.id,
        sender=settings.mail_from,
        subject=f"[Test] {campaign.subject}",
        preheader=campaign.preheader,
        body=campaign.body,
        body_format=campaign.body_format,
        explicit_text=campaign.body_text,
        company=settings.company,
    )
    unsubscribe, preferences = links(settings, campaign.id, uuid.UUID(int=0), "test")
    rendered = compiled.render(
        key=f"test.{uuid.uuid4().hex}",
        email=email,
        name=name,
        organisation="",
        token="test",  # noqa: S106
        unsubscribe_url=unsubscribe,
        preferences_url=preferences,
    )
    item = Outgoing(0, email, rendered.data)
    with SmtpPool(SmtpConfig.from_url(settings.smtp_url), 1) as pool:
        pool.send_group(address(settings.mail_from).addr_spec, [item], lambda keys: set(keys))
    if isinstance(item.error, SmtpRefused):
        raise Invalid({"email": [f"The mail server refused the address: {item.error}"]})
    if item.error is not None:
        raise ServiceUnavailable("The mail server cannot be reached.") from item.error


def due_campaigns(session: Session, now: datetime) -> list[uuid.UUID]:
    """Start scheduled campaigns whose time has come."""
    started = []
    for campaign in session.scalars(
        select(Campaign)
        .where(Campaign.state == "scheduled", Campaign.scheduled_at <= now)
        .with_for_update(skip_locked=True)
    ):
        campaign.state = "sending"
        campaign.started_at = now
        started.append(campaign.id)
    session.commit()
    for campaign_id in started:
        jobs.enqueue("prepare_campaign", campaign_id)
    return started


def recover_stalled(session: Session, stale_after: timedelta, parallelism: int) -> list[uuid.UUID]:
    """Sending campaigns nobody works on (a worker died, a message was lost): start again."""
    now = utcnow()
    stalled = []
    for campaign in session.scalars(select(Campaign).where(Campaign.state == "sending")):
        last = campaign.last_progress_at or campaign.started_at or campaign.created_at
        if last > now - stale_after:
            continue
        claimable, pending = session.execute(
            text(
                "SELECT count(*) FILTER (WHERE state = 'queued'"
                " OR (state = 'retry' AND due_at <= now())"
                " OR (state = 'sending' AND lease_until < now())),"
                " count(*) FILTER (WHERE state IN ('queued', 'sending', 'retry'))"
                " FROM deliveries WHERE campaign_id = :c"
            ),
            {"c": campaign.id},
        ).one()
        # Unprepared, work nobody does, or done but not yet marked sent.
        if not campaign.prepared or claimable or not pending:
            stalled.append(campaign.id)
    session.rollback()
    for campaign_id in stalled:
        jobs.enqueue("prepare_campaign", campaign_id)
    return stalled
