"""The delivery engine: claim delivery rows, send them over a pool of reused SMTP connections
per worker process under a global rate cap, and record each outcome so that every recipient
is mailed exactly once.

The crash window. A mail counts as delivered once the SMTP server has the final ``.`` of
DATA. For a group of mails (one per pooled connection) we send MAIL, RCPT, DATA and each
whole message *without* that final dot, then commit ``state = 'sent'`` for the group's
rows (under our claim), and only then send the dots and read the replies. So:

- killed before the commit: the server never got a dot and drops the messages; the rows
  are still ``sending`` under an expired lease and are claimed again: sent once, later.
- killed after the commit: the rows say ``sent``; the dots are written back to back right
  after the commit, so the server has the mails. What remains is the instant between the
  commit returning and the last of those writes (one ``send`` call per connection): a kill
  exactly there loses those mails rather than sending them twice. We chose at-most-once
  for that instant, because a duplicate newsletter is what recipients notice.
- the server refuses after the dot (4xx/5xx): the row is changed from ``sent`` to
  ``retry`` / ``bounced`` in a second, rare commit.

Commits of ``sent`` use ``synchronous_commit = off`` (the transaction is
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

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Connection, Engine, text

from shared.celery_app import WorkerLocal
from shared.db import new_engine, startup_options
from shared.mail import Mailer, SmtpConfig
from shared.settings import Settings

_DOTS = re.compile(rb"(?m)^\.")
IDLE_CHECK_SECONDS = 20.0
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
    connections: int = 10  # SMTP connections per worker process, driven in lock-step
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
            connections=int(env.get("NEWSLETTER_SMTP_CONNECTIONS", cls.connections)),
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


class SmtpConnection(Mailer):
    """One SMTP connection of the pool (the shared Mailer's connect: TLS, login)."""

    def _connect(self) -> smtplib.SMTP:
        conn = super()._connect()
        # The final dot is a separate small write after the body: without TCP_NODELAY,
        # Nagle's algorithm holds it until the server's delayed ACK (about 40 ms a mail).
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.ehlo_or_helo_if_needed()
        return conn

    last_used = 0.0

    def open(self) -> smtplib.SMTP:
        """The connection; one idle for a while is checked with NOOP first, so that a
        server that closed it costs a reconnect rather than a retry of the mail."""
        if self._conn is not None and time.monotonic() - self.last_used > IDLE_CHECK_SECONDS:
            try:
                alive = self._conn.noop()[0] == 250
            except (OSError, smtplib.SMTPException):
                alive = False
            if not alive:
                self.drop()
        self.last_used = time.monotonic()
        return self._connection()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def rset(self) -> None:
        if self._conn is not None:
            self._reset(self._conn)


@dataclass
class Outgoing:
    """One mail for :meth:`SmtpPool.send_group`; the outcome is written back into it."""

    key: int
    recipient: str
    data: bytes
    error: Exception | None = None
    committed: bool = False  # the row was committed as sent before the final dot


_Live = tuple[SmtpConnection, smtplib.SMTP, Outgoing]


class SmtpPool:
    """SMTP connections reused across mails and tasks, driven in lock-step: the envelope
    commands of a group of mails go out on all connections before any reply is read, the
    bodies follow, then ONE commit marks the group sent, then the final dots go out. Round
    trips overlap across connections, and the commit is shared by the group, while every
    mail's commit still comes before its dot (see the module docstring)."""

    def __init__(self, config: SmtpConfig, size: int) -> None:
        self.connections = [SmtpConnection(config) for _ in range(max(1, size))]
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.connections)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()

    def drop(self) -> None:
        for connection in self.connections:
            connection.drop()

    def __enter__(self) -> SmtpPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send_group(
        self, sender: str, items: list[Outgoing], commit: Callable[[list[int]], set[int]]
    ) -> None:
        """Send up to ``size`` mails. ``commit(keys)`` runs after the bodies and before the
        final dots and returns the keys still to be sent (the others are abandoned: their
        connection is dropped, so the server discards them). Outcomes land in the items."""
        if len(items) > self.size:
            raise ValueError("more mails than connections")
        with self._lock:
            live = self._envelopes(sender, items)
            ready: list[_Live] = []
            for connection, conn, item in live:
                try:
                    body = _DOTS.sub(b"..", item.data)
                    conn.send(body if body.endswith(b"\r\n") else body + b"\r\n")
                    ready.append((connection, conn, item))
                except (OSError, smtplib.SMTPException) as exc:
                    connection.drop()
                    item.error = exc
            if not ready:
                return
            try:
                keep = commit([item.key for _c, _s, item in ready])
            except BaseException:
                for connection, _conn, _item in ready:
                    connection.drop()
                raise
            for connection, _conn, item in ready:
                if item.key in keep:
                    item.committed = True
                else:
                    connection.drop()
                    item.error = Aborted()
            # The dots go out back to back right after the commit (the loss window).
            waiting: list[_Live] = []
            for connection, conn, item in ready:
                if not item.committed:
                    continue
                try:
                    conn.sock.sendall(b".\r\n")  # type: ignore[union-attr]
                    waiting.append((connection, conn, item))
                except (OSError, AttributeError) as exc:
                    connection.drop()
                    item.error = exc
            for connection, conn, item in waiting:
                try:
                    code, message = conn.getreply()
                except (OSError, smtplib.SMTPException) as exc:
                    connection.drop()
                    item.error = exc
                    continue
                if code != 250:
                    item.error = SmtpRefused(code, message.decode("utf-8", "replace"))

    def _envelopes(self, sender: str, items: list[Outgoing]) -> list[_Live]:
        """MAIL, RCPT and DATA on every connection, step by step across connections (or all
        three at once where the server offers PIPELINING); the ones that reached 354.

        Once a new connection fails (refused, timed out, turned away), the group's other
        new connections are not tried: the server is unreachable for now, and each try
        could cost the whole timeout. Their mails get the same error (retried later,
        counted toward the error streak)."""
        live: list[_Live] = []
        unreachable: Exception | None = None
        for connection, item in zip(self.connections, items, strict=False):
            if unreachable is not None and not connection.connected:
                item.error = unreachable
                continue
            try:
                live.append((connection, connection.open(), item))
            except (OSError, smtplib.SMTPException) as exc:
                connection.drop()
                item.error = unreachable = exc
        steps = [
            (lambda item: f"MAIL FROM:<{sender}>", (250,)),
            (lambda item: f"RCPT TO:<{item.recipient}>", (250, 251)),
            (lambda item: "DATA", (354,)),
        ]
        pipelined = [x for x in live if x[1].has_extn("pipelining")]
        stepwise = [x for x in live if not x[1].has_extn("pipelining")]
        failed: set[int] = set()
        for group, batches in ((pipelined, [steps]), (stepwise, [[step] for step in steps])):
            for batch in batches:
                current = [x for x in group if id(x[2]) not in failed]
                for connection, conn, item in current:
                    try:
                        conn.send("".join(f"{make(item)}\r\n" for make, _ok in batch).encode())
                    except (OSError, smtplib.SMTPException) as exc:
                        connection.drop()
                        item.error = exc
                        failed.add(id(item))
                for connection, conn, item in current:
                    if id(item) in failed:
                        continue
                    try:
                        replies = [(conn.getreply(), ok) for _make, ok in batch]
                    except (OSError, smtplib.SMTPException) as exc:
                        connection.drop()
                        item.error = exc
                        failed.add(id(item))
                        continue
                    for (code, message), ok in replies:
                        if code in ok:
                            continue
                        text_ = message.decode("utf-8", "replace")
                        if code in (-1, 421) or replies[-1][0][0] == 354:
                            connection.drop()
                            item.error = smtplib.SMTPServerDisconnected(text_)
                        else:
                            connection.rset()
                            item.error = SmtpRefused(code, text_)
                        failed.add(id(item))
                        break
        return [x for x in live if id(x[2]) not in failed]


class RateCap:
    """A rate cap shared by every worker, counted in Redis (fixed one-second windows)."""

    def __init__(self, redis_url: str, per_second: int, key: str = "newsletter-send") -> None:
        self.per_second = per_second
        self.key = key
        self.item = RateLimitItemPerSecond(max(1, per_second))
        self.limiter = FixedWindowRateLimiter(storage_from_string(redis_url))

    def acquire(self, count: int = 1) -> None:
        """Take ``count`` sends (at most the cap per second); wait for the next window if the
        current one is spent."""
        if self.per_second <= 0:
            return
        cost = max(1, min(count, self.per_second))
        while not self.limiter.hit(self.item, self.key, cost=cost):
            reset = self.limiter.get_window_stats(self.item, self.key).reset_time
            time.sleep(min(1.0, max(0.002, reset - time.time())))


# One SMTP pool, rate cap and database engine per worker process, made on first use (after
# the fork), so that a campaign reuses its SMTP connections across mails and tasks; the
# connections are dropped when the process ends.
smtp_pools: WorkerLocal[tuple[str, int], SmtpPool] = WorkerLocal(
    lambda key: SmtpPool(SmtpConfig.from_url(key[0]), key[1]), SmtpPool.drop
)
_caps: WorkerLocal[tuple[str, int], RateCap] = WorkerLocal(lambda key: RateCap(*key))


def _new_engine(key: tuple[str, bool]) -> Engine:
    database_url, synchronous_commit = key
    settings_off = {} if synchronous_commit else {"synchronous_commit": "off"}
    return new_engine(
        database_url,
        pool_size=2,
        max_overflow=4,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, **startup_options(**settings_off)},
    )


_engines: WorkerLocal[tuple[str, bool], Engine] = WorkerLocal(_new_engine)


def pool_for(settings: Settings, config: DeliveryConfig) -> SmtpPool:
    return smtp_pools((settings.smtp_url, config.connections))


def rate_cap_for(settings: Settings, config: DeliveryConfig) -> RateCap:
    return _caps((settings.redis_url, config.rate_per_second))


def engine_for(settings: Settings, config: DeliveryConfig) -> Engine:
    return _engines((settings.database_url, config.synchronous_commit))


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
                "limit": max(1, min(config.chunk, config.rate_per_second or config.chunk)),
            },
        ).all()
        conn.commit()
        if rows:
            return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)
    return []


def mark_sent(conn: Connection, claim_id: str, ids: list[int]) -> set[int]:
    """Commit a group as sent, under our claim; returns the ids that are still ours."""
    rows = conn.execute(
        text(
            "UPDATE deliveries SET state = 'sent', sent_at = now(), lease_until = NULL"
            " WHERE id = ANY(:ids) AND state = 'sending' AND claimed_by = :claim RETURNING id"
        ),
        {"ids": ids, "claim": claim_id},
    ).all()
    conn.commit()
    return {row[0] for row in rows}
