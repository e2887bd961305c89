"""Fault tests on real worker processes and a real SMTP server: a worker killed with
SIGKILL mid-campaign, a server that answers 4xx to a share of mails, and hard bounces.
Every recipient must get the campaign exactly once (or, if bounced, never)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.newsletter import jobs
from services.newsletter.models import Delivery, Subscriber, Suppression
from shared.db import get_database
from shared.net import free_port
from shared.smtp_sink import SinkHandler, start_sink
from shared.testing import wait_until

pytestmark = pytest.mark.slow

RECIPIENTS = 300


def _counts(sink: SinkHandler, addresses: list[str]) -> Counter[str]:
    wanted = set(addresses)
    with sink._lock:
        return Counter(r for m in sink.messages for r in m.recipients if r in wanted)


def _send(client: FlaskClient, writer: dict[str, str], list_id: str) -> str:
    created = client.post(
        "/api/v1/campaigns",
        json={"subject": "Netzwerk-Newsletter Dezember", "body": "Hallo {{ name }}!",
              "list_ids": [list_id]},
        headers=writer,
    )  # fmt: skip
    campaign_id = str(created.get_json()["id"])
    assert client.post(f"/api/v1/campaigns/{campaign_id}/send", headers=writer).status_code == 202
    return campaign_id


def _until_done(
    app: Flask, client: FlaskClient, writer: dict[str, str], campaign_id: str, timeout: float = 90
) -> dict[str, Any]:
    """Poll the progress; kick the periodic tick as beat would (every second here)."""
    last_tick = 0.0

    def done() -> Any:
        nonlocal last_tick
        if time.monotonic() - last_tick > 1:
            with app.app_context():
                jobs.enqueue("tick")
            last_tick = time.monotonic()
        body = client.get(f"/api/v1/campaigns/{campaign_id}/progress", headers=writer).get_json()
        return body if body["state"] == "sent" else None

    return dict(wait_until(done, timeout=timeout, interval=0.2))


FAST = {
    "NEWSLETTER_LEASE_SECONDS": "2",
    "NEWSLETTER_RETRY_BASE_SECONDS": "0.3",
    "NEWSLETTER_RATE_PER_SECOND": "150",
    "NEWSLETTER_CHUNK": "10",
}


def _streak_of_ten(port: int, timeout: float = 15) -> dict[str, str]:
    """Worker settings: mail to this port, pause after ten errors in a row."""
    return {
        "SMTP_URL": f"smtp://127.0.0.1:{port}?timeout={timeout}",
        "NEWSLETTER_MAX_ERROR_STREAK": "10",
        **FAST,
    }


def _until_paused_by_errors(
    client: FlaskClient, writer: dict[str, str], campaign_id: str
) -> dict[str, Any]:
    path = f"/api/v1/campaigns/{campaign_id}/progress"

    def paused() -> Any:
        body = client.get(path, headers=writer).get_json()
        return body if body["state"] == "paused" else None

    progress = dict(wait_until(paused, timeout=60, interval=0.2))
    assert "zu viele Fehler" in progress["paused_reason"]
    return progress


class _HoldingSink(SinkHandler):
    """Stores mail as the sink does; while ``holding``, it answers no RCPT until
    ``released``. A worker waits there with its group claimed and nothing committed."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.released = threading.Event()
        self.held = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.holding.is_set():
            with self._lock:
                self.held += 1
            while not self.released.is_set():
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def holding_sink() -> Iterator[_HoldingSink]:
    handler = _HoldingSink()
    controller, _ = start_sink(handler=handler)
    yield handler
    handler.released.set()
    controller.stop()


def test_worker_killed_mid_campaign_every_recipient_exactly_once(
    holding_sink: _HoldingSink,  # first: stopped after the workers
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    worker_process: Callable[..., subprocess.Popen[bytes]],
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    """The worker is killed while it waits on the server with a group claimed: its rows
    come back when their lease runs out, and the next worker sends them. (Not at a random
    instant: between the commit of "sent" and the last final dot, a kill loses the group's
    mails by design, rather than sending them twice; see services/newsletter/delivery.py.)"""
    sink = holding_sink
    list_id = make_list()
    addresses = add_subscribers([list_id], RECIPIENTS)
    settings = {**FAST, "SMTP_URL": f"smtp://127.0.0.1:{sink.port}"}
    victim = worker_process(
        "newsletter", concurrency=2, **{**settings, "NEWSLETTER_RATE_PER_SECOND": "100"}
    )
    campaign_id = _send(newsletter_client, writer, list_id)

    wait_until(lambda: sum(_counts(sink, addresses).values()) >= RECIPIENTS // 5, timeout=60)
    sink.holding.set()
    # Mail still arrives from groups past their RCPTs; once none has come for a second,
    # every sender waits on a held RCPT (or has no work), short of its commit.
    seen = [-1]

    def settled() -> bool:
        now = sum(_counts(sink, addresses).values())
        quiet = now == seen[0] and sink.held > 0
        seen[0] = now
        return quiet

    wait_until(settled, timeout=60, interval=1.0)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    received_at_kill = sum(_counts(sink, addresses).values())
    assert received_at_kill < RECIPIENTS, "the kill came too late to test anything"
    with get_database(newsletter_app).session() as session:
        claimed = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.campaign_id == uuid.UUID(campaign_id), Delivery.state == "sending")
        )
    assert claimed, "the killed worker held no rows: their lease is not tested"
    sink.holding.clear()
    sink.released.set()

    worker_process("newsletter", concurrency=2, **settings)
    progress = _until_done(newsletter_app, newsletter_client, writer, campaign_id)
    counts = _counts(sink, addresses)
    missing = set(addresses) - set(counts)
    twice = [a for a, n in counts.items() if n > 1]
    assert not missing and not twice, (missing, twice, progress, received_at_kill)
    assert progress["sent"] == progress["total"] == RECIPIENTS


@pytest.fixture
def flaky_sink() -> Iterator[tuple[SinkHandler, int, set[str], set[str]]]:
    """A server that answers 451 to the first attempt of every third recipient and 550 5.1.1
    to the addresses in ``gone``."""
    gone: set[str] = set()
    refused_once: set[str] = set()
    lock = threading.Lock()

    def respond(_sender: str, recipients: list[str], _raw: bytes) -> str | None:
        rcpt = recipients[0]
        if rcpt in gone:
            return f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
        with lock:
            if hash(rcpt) % 3 == 0 and rcpt not in refused_once:
                refused_once.add(rcpt)
                return "451 4.3.0 Temporary failure, try again later"
        return None

    controller, handler = start_sink(responder=respond)
    yield handler, controller.port, gone, refused_once
    controller.stop()


def test_4xx_retried_until_delivered_once_and_5xx_bounced_and_suppressed(
    flaky_sink: tuple[SinkHandler, int, set[str], set[str]],  # first: stopped after the worker
    newsletter_client: FlaskClient,
    newsletter_app: Flask,
    worker_process: Callable[..., subprocess.Popen[bytes]],
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    sink, port, gone, refused_once = flaky_sink
    list_id = make_list()
    addresses = add_subscribers([list_id], 150)
    gone.update(addresses[:3])
    worker_process("newsletter", concurrency=2, SMTP_URL=f"smtp://127.0.0.1:{port}", **FAST)
    campaign_id = _send(newsletter_client, writer, list_id)
    progress = _until_done(newsletter_app, newsletter_client, writer, campaign_id)

    counts = _counts(sink, addresses)
    assert refused_once, "the server refused nothing; the test tests nothing"
    assert set(counts) == set(addresses) - gone
    assert max(counts.values()) == 1
    assert progress["sent"] == 147 and progress["bounced"] == 3 and progress["failed"] == 0
    with get_database(newsletter_app).session() as session:
        states = set(session.scalars(select(Subscriber.state).where(Subscriber.email.in_(gone))))
        suppressed = set(
            session.scalars(select(Suppression.email).where(Suppression.email.in_(gone)))
        )
    assert states == {"bounced"} and suppressed == gone


@pytest.fixture
def refusing_sink() -> Iterator[int]:
    controller, _handler = start_sink(responder=lambda _s, _r, _raw: "451 4.4.1 Overloaded")
    yield controller.port
    controller.stop()


def test_campaign_pauses_itself_after_too_many_errors_and_resumes(
    refusing_sink: int,  # first: stopped after the worker
    newsletter_client: FlaskClient,
    worker_process: Callable[..., subprocess.Popen[bytes]],
    writer: dict[str, str],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    list_id = make_list()
    add_subscribers([list_id], 40)
    worker_process("newsletter", concurrency=1, **_streak_of_ten(refusing_sink))
    campaign_id = _send(newsletter_client, writer, list_id)
    path = f"/api/v1/campaigns/{campaign_id}/progress"
    _until_paused_by_errors(newsletter_client, writer, campaign_id)

    # A group still in flight when the campaign paused counts as sent from its commit until
    # the server's 451 after the final dot puts it back; it must settle at nothing sent.
    def settled() -> Any:
        body = newsletter_client.get(path, headers=writer).get_json()
        return body if body["sent"] == 0 and body["pending"] == 40 else None

    progress = wait_until(settled, timeout=10, interval=0.1)
    assert progress["state"] == "paused"
    resumed = newsletter_client.post(f"/api/v1/campaigns/{campaign_id}/resume", headers=writer)
    assert resumed.status_code == 202 and resumed.get_json()["state"] == "sending"
    paused_again = newsletter_client.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=writer)
    assert paused_again.get_json()["state"] == "paused"


@pytest.fixture(params=["refused", "silent"])
def unreachable_server(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[int, str, list[socket.socket]]]:
    """A port where every connect is refused (nothing listens), or a server that accepts
    connections (kept in the list) and never greets, so that every one times out; and the
    error expected."""
    accepted: list[socket.socket] = []
    if request.param == "refused":
        yield free_port(), "ConnectionRefusedError", accepted
        return
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(0.1)

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(silent.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield silent.getsockname()[1], "timed out", accepted
        stop.set()
        thread.join()
    for conn in accepted:
        conn.close()


def test_campaign_pauses_itself_when_the_mail_server_cannot_be_reached(
    unreachable_server: tuple[int, str, list[socket.socket]],
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
    worker_process: Callable[..., subprocess.Popen[bytes]],
    newsletter_client: FlaskClient,
    writer: dict[str, str],
) -> None:
    """Connection refused and timeouts are no SMTP refusals, but they count toward the error
    streak all the same: the campaign pauses instead of retrying every recipient. After a
    failed connect, the group's other connections are not tried (each would time out)."""
    port, expected_error, accepted = unreachable_server
    list_id = make_list()
    add_subscribers([list_id], 40)
    worker_process("newsletter", concurrency=1, **_streak_of_ten(port, timeout=0.5))
    campaign_id = _send(newsletter_client, writer, list_id)
    progress = _until_paused_by_errors(newsletter_client, writer, campaign_id)
    assert progress["sent"] == 0 and progress["pending"] == 40
    with get_database(newsletter_client.application).session() as session:
        tried = session.execute(
            select(Delivery.last_error, Delivery.attempts).where(
                Delivery.campaign_id == uuid.UUID(campaign_id), Delivery.attempts > 0
            )
        ).all()
    assert tried and all(expected_error in (error or "") for error, _n in tried), tried
    if expected_error == "timed out":  # one connection per group, not one per mail
        assert 0 < len(accepted) < sum(attempts for _error, attempts in tried)
