"""Folding of German text for search and for matching records, written by the application
because the database has no unaccent: `Müller`, `Mueller` and `Muller` meet, as do
`Groß` and `gross`, `Str.` and `Straße`, and text composed (NFC) or decomposed (NFD, as
macOS writes it: `u` and a combining diaeresis)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

import phonenumbers

_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss"})
# Latin letters that Unicode does not decompose into a base letter and a mark (lower case):
# Turkish ı (Yılmaz), Polish ł, Nordic ø and æ, and the like.
_UNDECOMPOSED = str.maketrans(
    {"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ŧ": "t", "æ": "ae", "œ": "oe"}
)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# "Str." at the end of a word or alone, or "str" ending a word ("Ahornstr"): the usual
# abbreviations of "Straße".
_STREET_ABBREVIATION_SUFFIX = re.compile(r"(str)\.|(?<=[^\W\d_])str\b", re.IGNORECASE)
_STREET_ABBREVIATION = re.compile(r"\bstr\b", re.IGNORECASE)
_DE_TRANSLITERATION = re.compile(r"(ae|oe|ue)")
_NOT_DIGIT = re.compile(r"[^0-9]")
STREET_WORD = "strasse"
# PostgreSQL refuses a tsvector lexeme of 2047 bytes or more, and a tsvector of 1 MB or
# more; a folded word may be much longer than the word (a ligature such as ﷺ is 18 letters).
MAX_TERM_BYTES = 2046
MAX_VECTOR_BYTES = 1_000_000

LEGAL_FORMS = (
    "gmbh & co. kg",
    "gmbh & co kg",
    "ggmbh",
    "gmbh",
    "ug (haftungsbeschränkt)",
    "ug (haftungsbeschraenkt)",
    "ug",
    "e.k.",
    "e. k.",
    "ek",
    "e.kfr.",
    "e.kfm.",
    "e.v.",
    "e. v.",
    "ev",
    "eg",
    "ohg",
    "kg",
    "ag",
    "gbr",
    "mbh",
    "partg",
    "inh.",
)
_LEGAL_FORM = re.compile(
    r"(?:^|\s|,)(" + "|".join(re.escape(form) for form in LEGAL_FORMS) + r")(?=\s|$|,)",
    re.IGNORECASE,
)


def composed(text: str) -> str:
    """The text in NFC, so that ``u`` and a combining diaeresis are one letter, ``ü``."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def clip(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` that is at most ``max_bytes`` in UTF-8."""
    if len(text) * 4 <= max_bytes:  # no character takes more than 4 bytes
        return text
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


@functools.lru_cache(maxsize=65536)
def strip_accents(text: str) -> str:
    """``Müller`` -> ``muller``, ``Groß`` -> ``gross``, ``Café`` -> ``cafe`` (lower case)."""
    text = text.lower().replace("ß", "ss").replace("ẞ", "ss").translate(_UNDECOMPOSED)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold_name(text: str) -> str:
    """A vocabulary name as a user may type it: ``GROSS  Klein`` -> ``gross klein`` (case,
    accents, ß and spaces aside)."""
    return " ".join(strip_accents(text).split())


@functools.lru_cache(maxsize=65536)
def transliterate(text: str) -> str:
    """``Müller`` -> ``mueller`` (lower case), then any other accents stripped."""
    return strip_accents(composed(text).lower().translate(_TRANSLITERATION))


def expand_street(text: str) -> str:
    """``Hauptstr. 5`` -> ``Hauptstrasse 5``; ``Lange Str.`` -> ``Lange strasse``."""
    text = _STREET_ABBREVIATION_SUFFIX.sub(STREET_WORD, text)
    return _STREET_ABBREVIATION.sub(STREET_WORD, text)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(composed(text))


@functools.lru_cache(maxsize=65536)
def search_key(token: str) -> str:
    """The spelling of a token with every umlaut as its bare vowel, written either way:
    ``Müller``, ``Mueller`` and ``Muller`` -> ``muller``. Among the terms of every token,
    so a search looks for this one alone. Clipped to the length of a term (a word that long
    is found by its start)."""
    key = _DE_TRANSLITERATION.sub(lambda m: m.group(1)[0], transliterate(token))
    return clip(key, MAX_TERM_BYTES)


@functools.lru_cache(maxsize=65536)
def variants(token: str) -> frozenset[str]:
    """The spellings a folded token may have: ü as u and as ue, and ue written for ü."""
    found = {strip_accents(token), transliterate(token)}
    found = {clip(value, MAX_TERM_BYTES) for value in found} | {search_key(token)}
    return frozenset(value for value in found if value)


def index_terms(*texts: str | None) -> list[str]:
    """Every spelling of every word of the texts, for a ``simple`` tsvector.

    Street names also give their stem (``hauptstrasse`` -> ``haupt``) so that
    ``haupt str`` finds ``Hauptstraße``.
    """
    if len(texts) == 1:
        return list(_text_terms(texts[0])) if texts[0] else []
    seen: dict[str, None] = {}
    for text in texts:
        if text:
            seen.update(dict.fromkeys(_text_terms(text)))
    return list(seen)


@functools.lru_cache(maxsize=65536)
def _text_terms(text: str) -> tuple[str, ...]:
    """The terms of one text, in order, each once (streets, sectors, districts repeat)."""
    seen: dict[str, None] = {}
    for token in tokens(expand_street(text)):
        for value in variants(token):
            seen[value] = None
            if value.endswith(STREET_WORD) and len(value) > len(STREET_WORD):
                seen[value.removesuffix(STREET_WORD)] = None
                seen[STREET_WORD] = None
    return tuple(seen)


def tsvector(*parts: tuple[list[str], str]) -> str:
    """A ``tsvector`` in PostgreSQL's input syntax from (terms, weight) pairs, as
    ``to_tsvector('simple', ...)`` with ``setweight`` would build it; a term keeps the
    weight of its first part. Terms are letters and digits only, so need no escaping."""
    seen: dict[str, str] = {}
    for terms, weight in parts:
        for term in terms:
            seen.setdefault(term, weight)
    return " ".join(
        f"'{term}':{position}{weight}" for position, (term, weight) in enumerate(seen.items(), 1)
    )


def weighted_tsvectors(names: list[str], rest: list[str]) -> tuple[str, str]:
    """``tsvector((names, "A"), (rest, "B"))`` and ``tsvector((names, "A"))`` at once: the
    second is the start of the first. Terms beyond what a tsvector holds are left out."""
    entries = [f"'{term}':{position}A" for position, term in enumerate(names, 1)]
    named = set(names)
    position = len(entries)
    for term in dict.fromkeys(rest):
        if term not in named:
            position += 1
            entries.append(f"'{term}':{position}B")
    if sum(map(len, entries)) * 4 > MAX_VECTOR_BYTES:  # may be too large: count the bytes
        entries = _fitting(entries)
    return " ".join(entries), " ".join(entries[: len(names)])


def _fitting(entries: list[str]) -> list[str]:
    """The first entries that fit in a tsvector: each takes its term's bytes and at most
    8 more (its offset, its position), which its text (quotes, colon, position) exceeds."""
    total = 0
    for count, entry in enumerate(entries):
        total += len(entry.encode()) + 8
        if total > MAX_VECTOR_BYTES:
            return entries[:count]
    return entries


def query_terms(query: str) -> list[str]:
    """For each word the user typed, the prefix to look for: its :func:`search_key`.

    A prefix of a word has as its key a prefix of the word's key (``mue`` -> ``mu``,
    ``muel`` -> ``mul`` of ``muller``), so type-ahead finds every spelling with one
    prefix; ``str`` is a prefix of ``strasse`` as typed."""
    return [key for key in (search_key(raw) for raw in tokens(query)) if key]


def tsquery(query: str) -> str | None:
    """A ``tsquery`` in PostgreSQL's input syntax: every word must match as a prefix.
    Written as the tsvector is (not parsed again by PostgreSQL, which would split e.g.
    ``1e5abc``); terms are letters and digits, so need no escaping."""
    keys = query_terms(query)
    return " & ".join(f"'{key}':*" for key in keys) if keys else None


def match_name(name: str, legal_form: str | None = None) -> str:
    """A name for finding the same organisation twice: folded, without its legal form."""
    text = _LEGAL_FORM.sub(" ", f" {composed(name)} ")
    if legal_form:
        text = text.replace(composed(legal_form), " ")
    return " ".join(transliterate(token) for token in tokens(text))


def match_person_name(name: str) -> str:
    """A first or a last name for finding the same person twice: its words by their search
    keys (``Müller``, ``Mueller``, ``MÜLLER`` -> ``muller``; ``A.`` -> ``a``)."""
    return " ".join(search_key(token) for token in tokens(name))


def match_address(street: str | None, house_number: str | None) -> str:
    """An address for finding the same organisation twice: the folded street and house
    number (``Hauptstr. 12 a`` = ``Hauptstraße 12a``). Not the postcode: one record often
    lacks it, or has it wrong, and a name at a street and number is one place."""
    number = "".join(_address_tokens(house_number or ""))
    return " ".join([*_address_tokens(street or ""), *([number] if number else [])])


@functools.lru_cache(maxsize=65536)
def _address_tokens(text: str) -> tuple[str, ...]:
    """The folded words of a street or a house number (a street's words are those of each
    part: the abbreviation ``Str.`` and the word boundaries stop at the space between)."""
    return tuple(transliterate(token) for token in tokens(expand_street(text)))


def match_phone(phone: str | None) -> str | None:
    """A number for finding the same one twice: its digits as dialled from Germany.
    ``0381 1234567``, ``+49 (0)381 1234567`` and ``0049 381 1234567`` -> ``03811234567``;
    ``+43 1 5877`` -> ``004315877``.

    A number written nationally (most of them) is its digits; one written internationally
    is read by phonenumbers, which knows each country's trunk prefix (the ``(0)`` of
    +49 (0)381, where Rome's 0 in +39 06 is part of the number). What is not one number
    (two in one field) is its digits."""
    if not phone:
        return None
    digits = _NOT_DIGIT.sub("", phone)
    if not (phone.lstrip().startswith("+") or digits.startswith("00")):
        return digits or None
    try:
        number = phonenumbers.parse(phone, "DE")
    except phonenumbers.NumberParseException:
        return digits or None
    national = phonenumbers.national_significant_number(number)
    return f"0{national}" if number.country_code == 49 else f"00{number.country_code}{national}"


def fold_email(email: str | None) -> str | None:
    """An address as the register stores and compares it: trimmed, composed (NFC: an umlaut
    as macOS writes it is the one typed) and lower-cased."""
    return composed(email.strip()).lower() if email and email.strip() else None


def whole_address(address: str) -> re.Pattern[str]:
    """``address`` where it stands as a whole address in a text, in any case: not as the
    end of a longer one (``anna@beispiel.de`` is not in ``hanna@beispiel.de``) nor as the
    start of one (``…@beispiel.de.vu``)."""
    return re.compile(
        rf"(?<![\w.!#$%&'*+/=?^`{{|}}~-]){re.escape(address)}(?![\w-]|\.\w)", re.IGNORECASE
    )


def whole_words(text: str) -> re.Pattern[str]:
    """``text`` where it stands as whole words, in any case (``Anna Alt`` is not in
    ``Johanna Altmann``)."""
    return re.compile(rf"(?<!\w){re.escape(text)}(?!\w)", re.IGNORECASE)


def slug(text: str) -> str:
    return "-".join(tokens(transliterate(text)))


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
