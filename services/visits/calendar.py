"""Calendar files (RFC 5545) for trainings, built with the ``icalendar`` library.

One stable UID per training; SEQUENCE follows the training's ``sequence`` column, which
is raised when time or place change and on cancellation; a cancelled training is sent
as ``METHOD:CANCEL`` with the same UID. Times carry ``TZID=Europe/Berlin`` with a
VTIMEZONE, so calendars show the right local time on both sides of a DST change.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from icalendar import Calendar, Event

PRODID = "-//Quartier CRM//Schulungen//DE"
BERLIN = "Europe/Berlin"


def training_uid(training: Any, domain: str) -> str:
    return f"training-{training.id}@{domain}"


def training_calendar(
    training: Any, *, domain: str, organizer: str, url: str | None = None
) -> bytes:
    """The .ics of one training; ``organizer`` is a mail address (``Name <addr>`` allowed)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(BERLIN)
    cancelled = training.status == "cancelled"
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "CANCEL" if cancelled else "PUBLISH")

    event = Event()
    event.add("uid", training_uid(training, domain))
    event.add("dtstamp", training.updated_at)
    event.add("last-modified", training.updated_at)
    event.add("created", training.created_at)
    event.add("sequence", training.sequence)
    event.add("dtstart", training.starts_at.astimezone(tz))
    event.add("dtend", training.ends_at.astimezone(tz))
    event.add("summary", training.title)
    if training.description:
        event.add("description", training.description)
    location = ", ".join(
        part for part in (training.location_name, training.location_address) if part
    )
    if location:
        event.add("location", location)
    if url:
        event.add("url", url)
    name, addr = parseaddr(organizer)
    if addr:
        event.add("organizer", f"mailto:{addr}", parameters={"CN": name} if name else {})
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())
