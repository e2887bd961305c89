"""The German pages behind the links people click in their mails (confirm, cancel)."""

from __future__ import annotations

from typing import Any

from flask import Response

from . import services
from .mails import render_page

# The address holds a token: keep it out of caches, referrers and search engines.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}

TITLES = {
    404: "Ungültiger Link",
    409: "Nicht mehr möglich",
    410: "Link abgelaufen",
}


def signup_page(
    training: Any,
    *,
    action_url: str,
    ics_url: str,
    values: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    done: bool = False,
    status: int = 200,
) -> Response:
    """The public sign-up form of a training, and the page after sending it."""
    if done:
        heading = "Fast geschafft"
        paragraphs = [
            "Wir haben Ihnen eine E-Mail geschickt. Bitte bestätigen Sie Ihre Anmeldung über "
            "den Link darin; erst dann ist sie gültig."
        ]
        signup = None
    else:
        heading = "Zur Schulung anmelden"
        paragraphs = [training.description] if training.description else []
        signup = {"url": action_url, "values": values or {}, "errors": errors or {}}
    html = render_page(
        "link.html",
        heading=heading,
        paragraphs=paragraphs,
        error=False,
        training=training,
        action=None,
        signup=signup,
        ics_url=ics_url,
    )
    return Response(html, status=status, mimetype="text/html", headers=HEADERS)


def error_page(status: int, detail: str) -> Response:
    html = render_page(
        "link.html",
        heading=TITLES.get(status, "Das hat nicht geklappt"),
        paragraphs=[
            detail,
            "Bei Fragen antworten Sie einfach auf die E-Mail, die Sie von uns bekommen haben.",
        ],
        error=True,
        training=None,
        action=None,
        signup=None,
        ics_url=None,
    )
    return Response(html, status=status, mimetype="text/html", headers=HEADERS)


def link_page(
    purpose: str, registration: Any, *, acted: bool, action_url: str, ics_url: str
) -> Response:
    training = registration.training
    action = None
    paragraphs: list[str]
    show_ics = False
    if purpose == services.CONFIRM_PURPOSE and not acted:
        heading = "Anmeldung bestätigen"
        paragraphs = [
            f"Guten Tag {registration.name}, bitte bestätigen Sie Ihre Anmeldung mit einem "
            "Klick auf die Schaltfläche."
        ]
        action = {"url": action_url, "label": "Anmeldung jetzt bestätigen"}
    elif purpose == services.CONFIRM_PURPOSE and registration.status == "confirmed":
        heading = "Ihre Anmeldung ist bestätigt"
        paragraphs = [
            "Vielen Dank! Ihr Platz ist reserviert. Eine Bestätigung mit dem Termin für Ihren "
            "Kalender ist unterwegs in Ihr Postfach."
        ]
        show_ics = True
    elif purpose == services.CONFIRM_PURPOSE:
        heading = "Sie stehen auf der Warteliste"
        paragraphs = [
            "Vielen Dank für Ihre Bestätigung. Die Schulung ist leider ausgebucht; Sie stehen "
            f"auf Platz {registration.waitlist_position} der Warteliste. Wird ein Platz frei, "
            "rücken Sie automatisch nach und bekommen eine E-Mail."
        ]
    elif not acted:
        heading = "Von der Schulung abmelden"
        paragraphs = [
            f"Guten Tag {registration.name}, möchten Sie sich wirklich abmelden? Ihr Platz "
            "wird dann für jemanden von der Warteliste frei."
        ]
        action = {"url": action_url, "label": "Ja, abmelden"}
    else:
        heading = "Sie sind abgemeldet"
        paragraphs = ["Ihre Abmeldung ist eingegangen; Sie bekommen eine Bestätigung per E-Mail."]
    html = render_page(
        "link.html",
        heading=heading,
        paragraphs=paragraphs,
        error=False,
        training=training,
        action=action,
        signup=None,
        ics_url=ics_url if show_ics else None,
    )
    return Response(html, status=200, mimetype="text/html", headers=HEADERS)
