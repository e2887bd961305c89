"""An address erased in contacts (Art. 17 GDPR), as visits applies the event: the sign-ups
with it keep their counts and lose whom they name."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, literal, select

from services.contacts.services.suppressions import address_of
from services.visits import services
from services.visits.models import Mail, Registration, Training
from shared.db import get_database, utcnow
from shared.erasure import ADDRESS_ERASED, sql_email_sha256
from shared.testing import auth

from .helpers import apply, envelope, training_body


def _erasure(digest: str) -> dict[str, object]:
    return envelope(ADDRESS_ERASED, digest, 1, {"email_sha256": digest})


def test_the_hash_in_sql_is_the_registers_for_addresses_with_umlauts(visits_app: Flask) -> None:
    stored, digest = address_of(" Jürgen.Groß@BÄCKEREI-Müller.example ")
    with get_database(visits_app).session() as session:
        assert session.scalar(select(sql_email_sha256(literal(stored)))) == digest


def test_sign_ups_with_the_address_are_anonymised_and_idempotently(
    visits_app: Flask, visits_client: FlaskClient, staff_token: Callable[[str], str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    typed = f"Jürgen.{tag}@Bäckerei-Müller.example"
    created = visits_client.post(
        "/api/v1/trainings", json=training_body(), headers=auth(staff_token("coordinator"))
    )
    training_id = uuid.UUID(created.get_json()["id"])
    with get_database(visits_app).session() as session:
        coming = services.sign_up(
            session, training_id=training_id, name="Jürgen Müller", email=typed, phone="0381 1"
        ).registration.id
        other = services.sign_up(
            session, training_id=training_id, name="Ute", email=f"ute.{tag}@beispiel.example"
        ).registration.id
        past = Training(
            title="Kassenbuch digital",
            starts_at=utcnow() - timedelta(days=30),
            ends_at=utcnow() - timedelta(days=30, hours=-2),
            capacity=10,
            status="done",
        )
        session.add(past)
        session.flush()
        attended = Registration(
            training_id=past.id,
            name="Jürgen Müller",
            email=typed.lower(),
            status="confirmed",
            attended=True,
        )
        session.add(attended)
        session.commit()
        attended_id = attended.id

    # The register folds the address as typed: in SQL visits finds its own folded copy.
    _, digest = address_of(typed.upper())
    erasure = _erasure(digest)
    assert apply(visits_app, erasure) is True
    assert apply(visits_app, erasure) is False  # delivered twice: applied once
    assert apply(visits_app, _erasure(digest)) is True  # erased again: nothing more to do

    with get_database(visits_app).session() as session:
        rows = {
            row.id: row
            for row in session.scalars(
                select(Registration).where(Registration.id.in_([coming, other, attended_id]))
            )
        }
        for erased in (rows[coming], rows[attended_id]):
            assert (erased.name, erased.email, erased.phone) == ("", None, None)
            assert (erased.ip, erased.user_agent) == (None, None)
        assert rows[coming].status == "cancelled"  # no mail can reach them any more
        # The funders' count: who attended the past training, without whom.
        assert (rows[attended_id].status, rows[attended_id].attended) == ("confirmed", True)
        assert rows[other].email == f"ute.{tag}@beispiel.example"
        assert rows[other].status == "pending"
        mails = session.scalar(
            select(func.count()).select_from(Mail).where(Mail.registration_id == coming)
        )
        assert mails == 0
