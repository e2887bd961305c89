"""Outgoing mail: multipart text + HTML messages with correctly encoded German headers, sent
over one reused SMTP connection per process."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: str = "none"  # none | starttls | ssl
    timeout: float = 15.0
    verify: bool = True

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """``smtp://user:pass@host:587?tls=starttls``, ``smtps://host:465`` or ``smtp://host:25``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        security = "ssl" if parts.scheme == "smtps" else query.get("tls", "none")
        if security not in ("none", "starttls", "ssl"):
            raise ValueError("tls must be none, starttls or ssl")
        default_port = {"ssl": 465, "starttls": 587}.get(security, 25)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            security=security,
            timeout=float(query.get("timeout", 15)),
            verify=query.get("verify", "true").lower() not in ("0", "false", "no"),
        )


class Mailer:
    """Sends messages over one SMTP connection, reconnecting when the server dropped it."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        context = ssl.create_default_context()
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: smtplib.SMTP
        if cfg.security == "ssl":
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            if cfg.security == "starttls":
                conn.starttls(context=context)
        if cfg.username:
            conn.login(cfg.username, cfg.password or "")
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def send(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
    ) -> None:
        """Send one message; SMTP errors from the server (4xx/5xx) propagate to the caller."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    conn.send_message(
                        message, from_addr=sender, to_addrs=list(recipients) if recipients else None
                    )
                    return
                except smtplib.SMTPServerDisconnected:
                    # The server closed an idle connection; one fresh try.
                    self._conn = None
                    if attempt == 2:
                        raise
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
                    # A refusal of this message; the connection stays usable for the next.
                    self._reset(conn)
                    raise

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except smtplib.SMTPException:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    def drop(self) -> None:
        """Close the connection without a word to the server (no QUIT to wait for): a
        message not yet ended with its dot is discarded by the server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def __enter__(self) -> Mailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# Everything str.splitlines() breaks on: the email package refuses all of them in headers.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def has_line_break(value: str) -> bool:
    return any(ch in LINE_BREAKS for ch in value)


def address(value: str, name: str | None = None) -> Address:
    """An address object; the display name is encoded per RFC 2047 when the mail is written.

    Raises ValueError for anything that is not one plain address (CR/LF included).
    """
    if has_line_break(value) or (name and has_line_break(name)):
        raise ValueError("line breaks are not allowed in addresses or names")
    parsed_name, addr_spec = parseaddr(value)
    if not addr_spec or "@" not in addr_spec:
        raise ValueError(f"not an email address: {value!r}")
    return Address(display_name=name if name is not None else parsed_name, addr_spec=addr_spec)


def build_message(
    *,
    sender: str | Address,
    to: str | Address,
    subject: str,
    text: str,
    html: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
    domain: str | None = None,
    reply_to: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text first, then HTML), with optional attachments
    given as (filename, MIME type, bytes). Header values with line breaks are refused."""
    if has_line_break(subject):
        raise ValueError("line breaks are not allowed in the subject")
    msg = EmailMessage(policy=SMTP)
    sender_addr = sender if isinstance(sender, Address) else address(sender)
    msg["From"] = sender_addr
    msg["To"] = to if isinstance(to, Address) else address(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=domain or sender_addr.domain or "quartier.localhost")
    if reply_to:
        msg["Reply-To"] = address(reply_to)
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    for filename, mimetype, data in attachments:
        maintype, _, subtype = mimetype.partition("/")
        params = {}
        if ";" in subtype:
            subtype, _, rest = subtype.partition(";")
            for item in rest.split(";"):
                k, _, v = item.strip().partition("=")
                if k:
                    params[k] = v
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype.strip(), filename=filename, params=params
        )
    return msg
