"""A local SMTP server (aiosmtpd) that keeps every message it receives, for development and
tests. In a folder, each message is one ``.eml`` file; a test can also script answers."""

from __future__ import annotations

import email
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from shared.net import free_port

# Given (sender, recipients, raw bytes), answer None to accept or an SMTP reply to refuse.
Responder = Callable[[str, list[str], bytes], str | None]


@dataclass
class StoredMail:
    id: str
    path: Path | None
    sender: str
    recipients: list[str]
    raw: bytes
    received_at: datetime

    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=default_policy)


class SinkHandler:
    def __init__(self, folder: Path | None = None, responder: Responder | None = None) -> None:
        self.folder = folder
        self.responder = responder
        self.messages: list[StoredMail] = []
        self.port = 0  # set by start_sink
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        recipients = list(envelope.rcpt_tos)
        if self.responder is not None:
            answer = self.responder(envelope.mail_from, recipients, raw)
            if answer is not None:
                return answer
        now = datetime.now(UTC)
        mail_id = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        path = None
        if self.folder is not None:
            path = self.folder / f"{mail_id}.eml"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            tmp.rename(path)
        with self._lock:
            self.messages.append(
                StoredMail(mail_id, path, envelope.mail_from, recipients, raw, now)
            )
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def to(self, address: str) -> list[StoredMail]:
        with self._lock:
            return [
                m for m in self.messages if address.lower() in (r.lower() for r in m.recipients)
            ]


def start_sink(
    host: str = "127.0.0.1",
    port: int = 0,
    folder: Path | None = None,
    responder: Responder | None = None,
    handler: SinkHandler | None = None,
) -> tuple[Controller, SinkHandler]:
    """A sink on ``port`` (a free one by default); ``handler``: one of your own, a subclass
    that answers some command its way, instead of one made of ``folder`` and ``responder``."""
    handler = handler or SinkHandler(folder, responder)
    port = port or free_port(host)
    handler.port = port
    controller = Controller(handler, hostname=host, port=port, data_size_limit=50 * 1024 * 1024)
    controller.start()
    return controller, handler


def read_folder(folder: Path) -> list[StoredMail]:
    """The mails kept under ``folder``, oldest first."""
    mails = []
    for path in sorted(folder.glob("*.eml")):
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=default_policy)
        stamp = datetime.strptime(path.stem.split("-")[0], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        recipients = [str(a) for a in msg.get_all("To", [])]
        mails.append(StoredMail(path.stem, path, str(msg.get("From", "")), recipients, raw, stamp))
    return mails
