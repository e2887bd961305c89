"""Web addresses as people write them, and as formats that take only ASCII URIs need them.

An organisation's website is kept as it was typed, ``https://bäckerei-müller.de/angebot``
too: that is what people read and search for. Its host is an internationalised domain
name, checked by IDNA 2008 (with the UTS 46 mapping browsers use: ``Bäckerei.de`` is
``bäckerei.de``); a vCard (RFC 6350) gets the URI: the host in its ASCII form
(``xn--bckerei-mller-…``), anything else beyond ASCII percent-encoded (RFC 3986).
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import quote

import idna

# An address without a scheme that starts like a host name (``www.beispiel.de``,
# ``bäckerei.de/angebot``): the https:// it lacks is added.
BARE_HOST = re.compile(r"[\w-]+(\.[\w-]+)+(?:[/?#]|$)")
# A URI's scheme and authority (RFC 3986 3.1, 3.2): the host is in the authority, after
# the user information and before the port.
_AUTHORITY = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<authority>[^/?#]*)", re.IGNORECASE)
# A port (RFC 3986 3.2.3): ASCII digits, leading zeros allowed; TCP's ports are 1 to 65535.
_PORT = re.compile(r"0*(?P<number>[0-9]{1,5})")
# RFC 3986's reserved characters and "%" (unreserved ones are never quoted).
_URI_CHARACTERS = ":/?#[]@!$&'()*+,;=%"

InvalidHost = idna.IDNAError


def with_scheme(text: str) -> str:
    """``text`` with https:// before it if it is a bare host name (and path)."""
    stripped = text.strip()
    return f"https://{stripped}" if BARE_HOST.match(stripped) else text


def with_ascii_host(address: str) -> str:
    """``address`` with an internationalised host in its ASCII form (IDNA 2008), the rest
    as it is. Raises :class:`InvalidHost` if the host is no domain name; an address whose
    host is ASCII already is returned as it is (its labels are left to the URL check)."""
    match = _AUTHORITY.match(address)
    if match is None or match["authority"].isascii():
        return address
    user, at, host_port = match["authority"].rpartition("@")
    host, colon, port = host_port.partition(":")
    if not host.isascii():
        host = idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    rest = address[match.end("authority") :]
    return f"{match['scheme']}{user}{at}{host}{colon}{port}{rest}"


def port_in_range(address: str) -> bool:
    """False if ``address`` has a port other than ASCII digits for 1 to 65535, such as
    ``:99999``, ``:0`` or ``:٨٠`` (marshmallow's URL check takes any number of any Unicode
    digits for a port)."""
    match = _AUTHORITY.match(address)
    if match is None:
        return True
    host_port = match["authority"].rpartition("@")[2]
    # An IPv6 host (``[::1]``) has colons of its own: the port follows its bracket.
    port = host_port.rpartition("]")[2].partition(":")[2]
    number = _PORT.fullmatch(port)
    return not port or (number is not None and 1 <= int(number["number"]) <= 65535)


def ascii_uri(address: str) -> str:
    """A stored website as a URI of ASCII characters: the host by IDNA, the rest (umlauts,
    spaces in a path) percent-encoded as UTF-8. A host that IDNA refuses (stored before
    hosts were checked by it: any letters passed) is percent-encoded too, as RFC 3986
    3.2.2 allows, rather than failing the export."""
    with contextlib.suppress(InvalidHost):
        address = with_ascii_host(address)
    return quote(address, safe=_URI_CHARACTERS)
