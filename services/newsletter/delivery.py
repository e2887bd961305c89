"""The delivery engine: claim delivery rows, send them over one reused SMTP connection per
process under a global rate cap, and record each outcome so that every recipient is mailed
exactly once.

The crash window. A mail counts as delivered once the SMTP server has the final ``.`` of
DATA. We send MAIL, RCPT, DATA and the whole message *without* that final dot, then commit
``state = 'sent'`` for the row (under our claim), and only then send the dot and read the
reply. So:

- killed before the commit: the server never got the dot and drops the message; the row is
  still ``sending`` under an expired lease and is claimed again: sent once, later.
- killed after the commit: the row says ``sent``; the dot was written right after the
  commit (one ``send`` call), so the server has the mail. What remains is the few
  microseconds between the commit returning and the write of five bytes: a kill exactly
  there loses that one mail rather than sending it twice. We chose at-most-once for that
  instant, because a duplicate newsletter is what recipients notice and complain about.
- the server refuses after the dot (4xx/5xx): the row is changed from ``sent`` to
  ``retry`` / ``bounced`` in a second, rare commit.

Commits for the per-mail ``sent`` use ``synchronous_commit = off`` (the transaction is
visible at once, flushed to disk within a fraction of a second): a worker crash cannot lose
it; a crash of the database server itself could resend the mails of its last fraction of a
second. Set ``NEWSLETTER_SYNCHRONOUS_COMMIT=on`` to trade speed for that too.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Connection, Engine, create_engine, text

from shared.mail import Mailer, SmtpConfig
from shared.settings import Settings

_DOTS = re.compile(rb"(?m)^\.")
_HARD_STATUS = re.compile(r"\b5\.1\.(1|2|3|10)\b")


@dataclass(frozen=True)
class DeliveryConfig:
    rate_per_second: int = 100  # for all workers together; 0 = no cap
    chunk: int = 20
    lease_seconds: int = 120
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    max_error_streak: int = 50
    parallelism: int = 4
    synchronous_commit: bool = False

    @classmethod
    def from_env(cls) -> DeliveryConfig:
        env = os.environ
        return cls(
            rate_per_second=int(env.get("NEWSLETTER_RATE_PER_SECOND", cls.rate_per_second)),
            chunk=int(env.get("NEWSLETTER_CHUNK", cls.chunk)),
            lease_seconds=int(env.get("NEWSLETTER_LEASE_SECONDS", cls.lease_seconds)),
            max_attempts=int(env.get("NEWSLETTER_MAX_ATTEMPTS", cls.max_attempts)),
            retry_base_seconds=float(
                env.get("NEWSLETTER_RETRY_BASE_SECONDS", cls.retry_base_seconds)
            ),
            max_error_streak=int(env.get("NEWSLETTER_MAX_ERROR_STREAK", cls.max_error_streak)),
            parallelism=int(env.get("NEWSLETTER_PARALLELISM", cls.parallelism)),
            synchronous_commit=env.get("NEWSLETTER_SYNCHRONOUS_COMMIT", "off").lower()
            in ("on", "1", "true"),
        )

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(3600.0, self.retry_base_seconds * 2 ** max(0, attempts - 1)))


class SmtpRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def hard(self) -> bool:
        if _HARD_STATUS.search(self.message):
            return True
        return self.code in (550, 551, 553) and not re.search(r"\b5\.\d+\.\d+\b", self.message)


class Aborted(Exception):
    """The row was taken away (unsubscribed, cancelled) before the mail was complete."""


class CampaignMailer(Mailer):
    """The shared mailer plus a two-phase send: the caller commits before the final dot."""

    def send_two_phase(
        self, sender: str, recipient: str, data: bytes, commit: Callable[[], bool]
    ) -> None:
        """Send ``data``; ``commit`` runs after the body and before the final dot and
        returns False to abandon the mail (the connection is dropped, the server discards
        it). Raises SmtpRefused for a 4xx/5xx answer, OSError/SMTPException for the wire."""
        with self._lock:
            conn = self._connection()
            try:
                conn.ehlo_or_helo_if_needed()
                self._expect(conn, conn.mail(sender), 250, conn)
                self._expect(conn, conn.rcpt(recipient), (250, 251), conn)
                conn.putcmd("data")
                self._expect(conn, conn.getreply(), 354, conn)
            except smtplib.SMTPServerDisconnected:
                self._conn = None
                raise
            body = _DOTS.sub(b"..", data)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            try:
                conn.send(body)
            except (OSError, smtplib.SMTPException):
                self._drop()
                raise
            if not commit():
                self._drop()
                raise Aborted()
            try:
                conn.send(b".\r\n")
                code, message = conn.getreply()
            except (OSError, smtplib.SMTPException):
                self._drop()
                raise
            if code != 250:
                raise SmtpRefused(code, message.decode("utf-8", "replace"))

    def _expect(
        self, conn: smtplib.SMTP, reply: tuple[int, bytes], ok: int | tuple[int, ...], _c: Any
    ) -> None:
        code, message = reply
        wanted = ok if isinstance(ok, tuple) else (ok,)
        if code not in wanted:
            if code == -1 or code == 421:
                self._drop()
                raise smtplib.SMTPServerDisconnected(message.decode("utf-8", "replace"))
            self._reset(conn)
            raise SmtpRefused(code, message.decode("utf-8", "replace"))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class RateCap:
    """A rate cap shared by every worker, counted in Redis (fixed one-second windows)."""

    def __init__(self, redis_url: str, per_second: int, key: str = "newsletter-send") -> None:
        self.per_second = per_second
        self.key = key
        self.item = RateLimitItemPerSecond(max(1, per_second))
        self.limiter = FixedWindowRateLimiter(storage_from_string(redis_url))

    def acquire(self) -> None:
        if self.per_second <= 0:
            return
        while not self.limiter.hit(self.item, self.key):
            reset = self.limiter.get_window_stats(self.item, self.key).reset_time
            time.sleep(min(1.0, max(0.002, reset - time.time())))


# One mailer, rate cap and database engine per worker process, made on first use (after the
# fork), so that a campaign reuses its SMTP connection across mails and tasks.
_lock = threading.Lock()
_mailers: dict[str, CampaignMailer] = {}
_caps: dict[tuple[str, int], RateCap] = {}
_engines: dict[tuple[str, bool], Engine] = {}


def mailer_for(settings: Settings) -> CampaignMailer:
    with _lock:
        mailer = _mailers.get(settings.smtp_url)
        if mailer is None:
            mailer = _mailers[settings.smtp_url] = CampaignMailer(
                SmtpConfig.from_url(settings.smtp_url)
            )
        return mailer


def rate_cap_for(settings: Settings, config: DeliveryConfig) -> RateCap:
    key = (settings.redis_url, config.rate_per_second)
    with _lock:
        cap = _caps.get(key)
        if cap is None:
            cap = _caps[key] = RateCap(settings.redis_url, config.rate_per_second)
        return cap


def engine_for(settings: Settings, config: DeliveryConfig) -> Engine:
    key = (settings.database_url, config.synchronous_commit)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            options = "" if config.synchronous_commit else "-c synchronous_commit=off"
            engine = _engines[key] = create_engine(
                settings.database_url,
                pool_size=2,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5, "options": options},
            )
        return engine


def forget_process_resources() -> None:
    """After a fork: the child must not share the parent's sockets."""
    with _lock:
        _mailers.clear()
        _caps.clear()
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


@dataclass
class Claimed:
    id: int
    subscriber_id: uuid.UUID
    email: str
    name: str
    organisation: str
    token: str
    attempts: int


_CLAIM = """
UPDATE deliveries SET state = 'sending', lease_until = now() + make_interval(secs => :lease),
       claimed_by = :claim, attempts = attempts + 1
WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.campaign_id = :campaign AND {condition}
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = :campaign AND c.state = 'sending')
    ORDER BY d.id LIMIT :limit FOR UPDATE SKIP LOCKED)
RETURNING id, subscriber_id, email, name, organisation, token, attempts
"""
_CONDITIONS = (
    "d.state = 'queued'",
    "d.state = 'retry' AND d.due_at <= now()",
    "d.state = 'sending' AND d.lease_until < now()",  # its worker died before the dot
)


def claim(
    conn: Connection, campaign_id: uuid.UUID, claim_id: str, config: DeliveryConfig
) -> list[Claimed]:
    for condition in _CONDITIONS:
        rows = conn.execute(
            text(_CLAIM.format(condition=condition)),
            {
                "campaign": campaign_id,
                "claim": claim_id,
                "lease": config.lease_seconds,
                "limit": config.chunk,
            },
        ).all()
        conn.commit()
        if rows:
            return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)
    return []


def mark_sent(conn: Connection, delivery_id: int, claim_id: str, message_id: str) -> bool:
    row = conn.execute(
        text(
            "UPDATE deliveries SET state = 'sent', sent_at = now(), message_id = :mid,"
            " lease_until = NULL WHERE id = :id AND state = 'sending' AND claimed_by = :claim"
            " RETURNING id"
        ),
        {"id": delivery_id, "claim": claim_id, "mid": message_id},
    ).first()
    conn.commit()
    return row is not None
