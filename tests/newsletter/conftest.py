"""Helpers for the newsletter tests: lists, confirmed subscribers, mails in the sink."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.smtp_sink import SinkHandler, StoredMail
from shared.testing import auth, unique_email, wait_until


@pytest.fixture
def writer(staff_token: Callable[[str], str]) -> dict[str, str]:
    return auth(staff_token("coordinator"))


@pytest.fixture
def make_list(newsletter_client: FlaskClient, writer: dict[str, str]) -> Callable[..., str]:
    def make(name: str | None = None, **values: Any) -> str:
        response = newsletter_client.post(
            "/api/v1/lists",
            json={"name": name or f"Netzwerk {uuid.uuid4().hex[:8]}", **values},
            headers=writer,
        )
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    return make


@pytest.fixture
def add_subscribers(
    newsletter_client: FlaskClient, writer: dict[str, str]
) -> Callable[..., list[str]]:
    """Confirmed subscribers by import (stated consent source); returns their addresses."""

    def add(list_ids: list[str], count: int = 1, names: list[str] | None = None) -> list[str]:
        rows = [
            {"email": unique_email("abo"), "name": (names or [])[i] if names else f"Person {i}"}
            for i in range(count)
        ]
        response = newsletter_client.post(
            "/api/v1/subscribers/import",
            json={
                "list_ids": list_ids,
                "source": "import",
                "consent_text_version": "2026-01",
                "note": "Unterschriftenliste Netzwerktreffen",
                "consented_at": datetime.now(UTC).isoformat(),
                "subscribers": rows,
            },
            headers=writer,
        )
        assert response.status_code == 200, response.get_json()
        return [r["email"] for r in rows]

    return add


def parse(mail: StoredMail) -> EmailMessage:
    return email.message_from_bytes(mail.raw, policy=default_policy)  # type: ignore[return-value]


def one_mail(sink: SinkHandler, address: str, timeout: float = 20) -> EmailMessage:
    mails = wait_until(lambda: sink.to(address), timeout=timeout)
    return parse(mails[0])


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def link_in(text: str, pattern: str) -> str:
    found = re.search(r"https?://\S*" + pattern + r"\S*", text)
    assert found, text
    return found.group(0)


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def staff_add(client: FlaskClient, headers: dict[str, str], email: str, list_id: str) -> Any:
    """``POST /subscribers``: staff add the address to the list, with a consent on paper."""
    return client.post(
        "/api/v1/subscribers",
        json={
            "email": email,
            "name": "Anna",
            "list_ids": [list_id],
            "consent": {
                "source": "form",
                "consent_text_version": "papier-2026",
                "note": "Anmeldekarte vom Stadtteilfest",
                "consented_at": datetime.now(UTC).isoformat(),
            },
        },
        headers=headers,
    )


@pytest.fixture
def newsletter_worker(celery_worker_for: Callable[..., Any], newsletter_app: Flask) -> Any:
    return celery_worker_for("newsletter", concurrency=2)


@pytest.fixture(scope="session", autouse=True)
def _smtp_pools_dropped() -> Iterator[None]:
    """Campaigns run in this process keep their SMTP connections for the next, as in a
    worker; they are dropped at the end, as a worker's are when it ends."""
    from services.newsletter.delivery import smtp_pools

    yield
    smtp_pools.release()
