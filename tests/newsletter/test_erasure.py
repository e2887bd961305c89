"""An address erased in contacts (Art. 17 GDPR), as newsletter applies the event: the
subscriber goes with consents, subscriptions, bounces and suppressions; the campaign mails
stay for the counts without the address; staff cannot bring the address back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from services.newsletter.campaigns import _record_bounce
from services.newsletter.delivery import Claimed, SmtpRefused
from services.newsletter.events import HANDLERS
from services.newsletter.models import (
    Bounce,
    Campaign,
    ConsentRecord,
    Delivery,
    ErasedAddress,
    InboxEvent,
    Subscriber,
    Subscription,
    Suppression,
)
from services.newsletter.services import record_bounce_rows
from shared.db import get_database
from shared.erasure import ADDRESS_ERASED, email_sha256, sql_email_sha256
from shared.events import Envelope, apply_event
from tests.contacts.concurrency import holding
from tests.newsletter.conftest import staff_add


def erasure_of(address: str) -> Envelope:
    digest = email_sha256(address)
    return {
        "id": str(uuid.uuid4()),
        "type": ADDRESS_ERASED,
        "source": "contacts",
        "aggregate_id": digest,
        "version": 1,
        "occurred_at": "2026-11-30T10:00:00+00:00",
        "data": {"email_sha256": digest},
    }


def _apply(app: Flask, envelope: Envelope) -> bool:
    with get_database(app).session() as session:
        return apply_event(session, InboxEvent, HANDLERS, envelope)


def _bounce(session: Session, address: str, *, hard: bool) -> None:
    """A delivery status notification for the address, as a mail server reports it."""
    record_bounce_rows(
        session,
        email=address.upper(),
        campaign_id=None,
        hard=hard,
        status="5.1.1",
        diagnostic=f"550 {address}: no such user",
        source="dsn",
    )


def _mailed(app: Flask, subscriber_id: uuid.UUID, list_id: str, state: str) -> uuid.UUID:
    """A campaign to the list with one mail to the subscriber, in the given state."""
    with get_database(app).session() as session:
        campaign = Campaign(subject="Neues aus Groß Klein", body="Hallo", list_ids=[list_id])
        session.add(campaign)
        session.flush()
        session.add(
            Delivery(
                campaign_id=campaign.id,
                subscriber_id=subscriber_id,
                email="x",
                name="Anna",
                organisation="Bäckerei",
                token="t" * 20,
                state=state,
            )
        )
        session.commit()
        return campaign.id


def test_the_subscriber_goes_and_the_campaign_counts_stay(
    newsletter_app: Flask,
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    list_id = make_list()
    address, other = add_subscribers([list_id], count=2)
    with get_database(newsletter_app).session() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
        assert subscriber_id is not None
        _bounce(session, address, hard=True)
        session.commit()
    sent = _mailed(newsletter_app, subscriber_id, list_id, "sent")
    queued = _mailed(newsletter_app, subscriber_id, list_id, "queued")

    envelope = erasure_of(address)
    assert _apply(newsletter_app, envelope) is True
    assert _apply(newsletter_app, envelope) is False  # delivered twice: applied once
    assert _apply(newsletter_app, erasure_of(address.upper())) is True  # erased again: fine

    with get_database(newsletter_app).session() as session:

        def count(model: Any, *where: Any) -> int:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

        assert count(Subscriber, Subscriber.email.in_([address, address.upper()])) == 0
        assert count(Subscription, Subscription.subscriber_id == subscriber_id) == 0
        assert count(ConsentRecord, ConsentRecord.subscriber_id == subscriber_id) == 0
        assert count(Bounce, func.lower(Bounce.email) == address) == 0
        assert count(Suppression, func.lower(Suppression.email) == address) == 0
        assert session.get(ErasedAddress, email_sha256(address)) is not None
        mails = session.execute(
            select(Delivery.campaign_id, Delivery.state, Delivery.subscriber_id, Delivery.email)
            .where(Delivery.campaign_id.in_([sent, queued]))
            .order_by(Delivery.id)
        ).all()
        assert [tuple(mail) for mail in mails] == [
            (sent, "sent", None, ""),  # still counted as sent
            (queued, "skipped", None, ""),  # never sent to an erased address
        ]
        assert count(Subscriber, Subscriber.email == other) == 1  # the others stay


def test_an_import_refuses_the_erased_address_row_and_takes_the_others(
    newsletter_app: Flask, newsletter_client: FlaskClient, writer: dict[str, str], make_list: Any
) -> None:
    list_id = make_list()
    erased = f"Erased.{uuid.uuid4().hex[:8]}@beispiel.example"
    welcome = f"welcome.{uuid.uuid4().hex[:8]}@beispiel.example"
    assert _apply(newsletter_app, erasure_of(erased))
    imported = newsletter_client.post(
        "/api/v1/subscribers/import",
        json={
            "list_ids": [list_id],
            "source": "import",
            "consent_text_version": "2026-01",
            "note": "Unterschriftenliste Netzwerktreffen",
            "consented_at": datetime.now(UTC).isoformat(),
            "subscribers": [{"email": erased}, {"email": welcome}],
        },
        headers=writer,
    )
    assert imported.status_code == 200, imported.get_json()
    assert (imported.get_json()["created"], imported.get_json()["suppressed"]) == (1, 1)
    with get_database(newsletter_app).session() as session:
        emails = set(
            session.scalars(
                select(Subscriber.email).where(Subscriber.email.in_([erased.lower(), welcome]))
            )
        )
    assert emails == {welcome}


def test_a_newsletter_request_made_before_the_erasure_is_not_applied_after_it(
    newsletter_app: Flask, make_list: Any
) -> None:
    """A training sign-up's tick relayed before the address was erased, and applied after
    the erasure (events of two services come in any order; a failed one is retried later),
    is no fresh consent: no subscriber and no confirmation mail to the erased address."""
    make_list(training_signup=True)
    address = f"anmeldung.{uuid.uuid4().hex[:8]}@beispiel.example"
    requested_at = datetime.now(UTC) - timedelta(minutes=5)
    assert _apply(newsletter_app, erasure_of(address))
    request = {
        "id": str(uuid.uuid4()),
        "type": "visits.registration.newsletter_requested",
        "source": "visits",
        "aggregate_id": str(uuid.uuid4()),
        "version": 1,
        "occurred_at": requested_at.isoformat(),
        "data": {
            "email": address,
            "name": "Anna Anmeldung",
            "training_title": "Kassenbuch digital",
            "requested_at": requested_at.isoformat(),
            "ip": "192.0.2.7",
            "user_agent": "Browser",
        },
    }
    assert _apply(newsletter_app, request)
    with get_database(newsletter_app).session() as session:
        assert session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is None
        assert session.get(ErasedAddress, email_sha256(address)) is not None


def test_a_bounce_that_arrives_after_the_erasure_is_not_stored(newsletter_app: Flask) -> None:
    """A delivery status notification for a mail sent before the erasure comes back
    later: it would store the erased address again (a bounce, a suppression)."""
    address = f"spaet.{uuid.uuid4().hex[:8]}@beispiel.example"
    assert _apply(newsletter_app, erasure_of(address))
    with get_database(newsletter_app).session() as session:
        for hard in (True, False):
            _bounce(session, address, hard=hard)
        session.commit()
        digest = email_sha256(address)
        stored = [
            session.scalar(
                select(func.count())
                .select_from(model)
                .where(sql_email_sha256(model.email) == digest)
            )
            for model in (Bounce, Suppression)
        ]
    assert stored == [0, 0]


def test_a_mail_in_flight_while_its_address_is_erased_keeps_no_reply_quoting_it(
    newsletter_app: Flask,
    make_list: Callable[..., str],
    add_subscribers: Callable[..., list[str]],
) -> None:
    """A worker sends while the erasure applies; the server's refusal, which quotes the
    address, arrives after it."""
    list_id = make_list()
    (address,) = add_subscribers([list_id], count=1)
    database = get_database(newsletter_app)
    with database.session() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
        assert subscriber_id is not None
    campaign_id = _mailed(newsletter_app, subscriber_id, list_id, "sending")
    with database.session() as session:
        delivery = session.scalars(
            select(Delivery).where(Delivery.campaign_id == campaign_id)
        ).one()
        delivery.claimed_by = "worker-1"
        session.commit()
        claimed = Claimed(delivery.id, subscriber_id, address, "Anna", "Bäckerei", "t" * 20, 1)

    assert _apply(newsletter_app, erasure_of(address)) is True
    refusal = SmtpRefused(550, f"5.1.1 <{address}>: Recipient address rejected")
    with database.engine.connect() as conn:
        _record_bounce(conn, claimed, "worker-1", campaign_id, refusal)

    with database.session() as session:
        mail = session.get(Delivery, claimed.id)
        assert mail is not None
        assert (mail.email, mail.last_error) == ("", None)
        bounces = select(func.count()).where(func.lower(Bounce.email) == address)
        assert not session.scalar(bounces)


def test_a_staff_add_at_the_moment_of_the_erasure_is_erased_with_it(
    newsletter_app: Flask, newsletter_client: FlaskClient, writer: dict[str, str], make_list: Any
) -> None:
    """Staff add the address while the erasure is applied: the add has looked at the erased
    hashes (none yet) and stored the subscriber, uncommitted, when the erasure looks for
    subscribers. The test's own transaction holds the consent records' table, so the add
    stops at its consent record; the erasure is applied meanwhile."""
    list_id = make_list()
    address = f"gleichzeitig.{uuid.uuid4().hex[:8]}@beispiel.example"

    with (
        ThreadPoolExecutor(2) as pool,
        holding(newsletter_app, "LOCK TABLE consent_records IN SHARE ROW EXCLUSIVE MODE"),
    ):
        added = pool.submit(staff_add, newsletter_app.test_client(), writer, address, list_id)
        _wait_until(
            lambda: _waiting(newsletter_app, "relation = 'consent_records'::regclass"), added
        )
        erased = pool.submit(_apply, newsletter_app, erasure_of(address))
        # Before: the erasure found no subscriber and was done. Now it waits for the add.
        _wait_until(
            lambda: erased.done() or _waiting(newsletter_app, "locktype = 'advisory'"), added
        )
    assert added.result(timeout=15).status_code == 201, added.result().get_json()
    assert erased.result(timeout=15) is True
    with get_database(newsletter_app).session() as session:
        assert session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is None
        assert session.get(ErasedAddress, email_sha256(address)) is not None
    again = staff_add(newsletter_client, writer, address, list_id)
    assert again.status_code == 409 and again.get_json()["code"] == "erased"


def _waiting(app: Flask, which: str) -> bool:
    """Whether a backend waits for a lock of this kind (other tests' workers may wait for
    others)."""
    with get_database(app).engine.connect() as conn:
        return bool(
            conn.scalar(text(f"SELECT count(*) FROM pg_locks WHERE NOT granted AND {which}"))  # noqa: S608
        )


def _wait_until(condition: Callable[[], bool], call: Future[Any], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert not call.done(), f"the call did not wait: {call.result()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
