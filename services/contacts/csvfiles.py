"""Reading contact CSV files as people export them (Outlook in German or English, Excel,
our own export) and writing ours so that it reads back the same."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import Invalid

from .normalise import strip_accents

# Our own export's columns, in order; list values are joined with LIST_SEPARATOR (see
# join_list).
EXPORT_COLUMNS = (
    "id",
    "kind",
    "name",
    "legal_form",
    "sector",
    "wz_code",
    "street",
    "house_number",
    "postcode",
    "city",
    "district",
    "latitude",
    "longitude",
    "website",
    "email",
    "phone",
    "employees",
    "status",
    "needs",
    "tags",
    "notes",
)
PERSON_FIELDS = ("first_name", "last_name", "person_phone", "job_title")
FIELDS = frozenset(EXPORT_COLUMNS) | frozenset(PERSON_FIELDS)
LIST_FIELDS = ("needs", "tags")
LIST_SEPARATOR = ";"

# Column headers we understand, folded (see _fold): Outlook's contact export in German and
# English, common German spreadsheet headers, and our own field names.
HEADER_ALIASES: dict[str, str] = {
    # Outlook, German
    "firma": "name",
    "vorname": "first_name",
    "nachname": "last_name",
    "emailadresse": "email",
    "telefongeschaftlich": "phone",
    "strassegeschaftlich": "street",
    "postleitzahlgeschaftlich": "postcode",
    "ortgeschaftlich": "city",
    "webseite": "website",
    "notizen": "notes",
    "kategorien": "tags",
    "mobiltelefon": "person_phone",
    "position": "job_title",
    # Outlook, English
    "company": "name",
    "firstname": "first_name",
    "lastname": "last_name",
    "emailaddress": "email",
    "businessphone": "phone",
    "businessstreet": "street",
    "businesspostalcode": "postcode",
    "businesscity": "city",
    "webpage": "website",
    "notes": "notes",
    "categories": "tags",
    "mobilephone": "person_phone",
    "jobtitle": "job_title",
    # German spreadsheets
    "name": "name",
    "unternehmen": "name",
    "betrieb": "name",
    "art": "kind",
    "rechtsform": "legal_form",
    "branche": "sector",
    "wzcode": "wz_code",
    "strasse": "street",
    "str": "street",
    "hausnummer": "house_number",
    "hausnr": "house_number",
    "plz": "postcode",
    "postleitzahl": "postcode",
    "ort": "city",
    "stadt": "city",
    "stadtteil": "district",
    "email": "email",
    "telefon": "phone",
    "website": "website",
    "internet": "website",
    "mitarbeiter": "employees",
    "beschaftigte": "employees",
    "bedarfe": "needs",
    "schlagworter": "tags",
    "tags": "tags",
}
HEADER_ALIASES.update({column.replace("_", ""): column for column in EXPORT_COLUMNS})
HEADER_ALIASES.update({field.replace("_", ""): field for field in PERSON_FIELDS})

_HOUSE_NUMBER = re.compile(
    r"^(?P<street>.*?\D)\s*(?P<number>\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?)$"
)


def _fold(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", strip_accents(header.strip().lstrip("\ufeff")))


@dataclass(frozen=True)
class Table:
    encoding: str
    delimiter: str
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (line number in the file, cells)
    warnings: tuple[str, ...] = ()  # about the file as a whole


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # see _decoded
    cp1252_lines: tuple[int, ...] = ()  # lines of a UTF-8 file read as Windows-1252


def decode(content: bytes) -> Decoded:
    """The text and the encoding: UTF-8 with or without BOM, UTF-16 with BOM, or
    Windows-1252 (what Excel and Outlook write on German Windows), or UTF-8 with some
    lines in Windows-1252 (see _decoded). A NUL character, in whatever encoding, is
    refused: no text file has one, and PostgreSQL's text cannot hold it."""
    decoded = _decoded(content)
    nul = decoded.text.find("\x00")
    if nul >= 0:
        line = len(_LINE_BREAK.findall(decoded.text, 0, nul)) + 1
        raise Invalid({"file": [f"Line {line}: a NUL character; this is not a text (CSV) file."]})
    return decoded


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BYTE_LINE_BREAK = re.compile(rb"(\r\n|\r|\n)")
# Lines a warning names at the most; the rest are counted.
WARNING_LINES = 10


def _decoded(content: bytes) -> Decoded:
    """A file is UTF-8 if it all is. If not, it may still be UTF-8 but for some lines in
    Windows-1252 (a file put together from two exports, one from Excel): when some line
    is UTF-8 with letters beyond ASCII (or the file starts with a UTF-8 BOM), each line is
    read as UTF-8 if it is that, else as Windows-1252, and the encoding is given as
    ``utf-8+cp1252`` (``utf-8-sig+cp1252`` with a BOM). Lines are split at the bytes
    ``\\r\\n``, ``\\r`` or ``\\n``, as the CSV reader splits them: both encodings write
    ASCII as ASCII, and no UTF-8 sequence holds those bytes, so a line break in a quoted
    cell splits it the same way. Otherwise the file is
    Windows-1252 as a whole (no line of it would be UTF-8 but by ASCII alone)."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Decoded(_decoded_as(content, "utf-16"), "utf-16")
    bom = content.startswith(codecs.BOM_UTF8)
    utf8 = "utf-8-sig" if bom else "utf-8"
    body = content[len(codecs.BOM_UTF8) :] if bom else content
    with contextlib.suppress(UnicodeDecodeError):
        return Decoded(body.decode("utf-8"), utf8)
    # The lines, each with its line break: every other item (b"" after the last line).
    parts = _BYTE_LINE_BREAK.split(body)
    lines, breaks = parts[::2], [*(part.decode("ascii") for part in parts[1::2]), ""]
    as_utf8 = [_utf8_or_none(line) for line in lines]
    if not bom and all(text is None or text.isascii() for text in as_utf8):
        return Decoded(_decoded_as(content, "cp1252"), "cp1252")
    return Decoded(
        "".join(
            (_decoded_as(line, "cp1252") if text is None else text) + line_break
            for line, text, line_break in zip(lines, as_utf8, breaks, strict=True)
        ),
        f"{utf8}+cp1252",
        tuple(number for number, text in enumerate(as_utf8, 1) if text is None),
    )


def _utf8_or_none(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decoded_as(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise Invalid(
            {"file": ["Unknown text encoding; save the file as UTF-8 or Windows-1252."]}
        ) from None


def encoding_warnings(decoded: Decoded) -> tuple[str, ...]:
    """What the user should check in a file read in two encodings: the lines read as
    Windows-1252 (the first WARNING_LINES of them, then how many more)."""
    lines = decoded.cp1252_lines
    if not lines:
        return ()
    named = ", ".join(map(str, lines[:WARNING_LINES]))
    more = f" and {len(lines) - WARNING_LINES} more" if len(lines) > WARNING_LINES else ""
    if len(lines) == 1:
        return (f"Line {named}: not UTF-8, read as Windows-1252; check its umlauts.",)
    return (f"Lines {named}{more}: not UTF-8, read as Windows-1252; check their umlauts.",)


def sniff_delimiter(text: str) -> str:
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=";,\t").delimiter
    except csv.Error:
        first = text.splitlines()[0] if text else ""
        return max(";,\t", key=first.count)


def read_table(content: bytes) -> Table:
    """Decode and split a CSV upload; a malformed one is a 422 naming ``file``."""
    decoded = decode(content)
    text = decoded.text
    if not text.strip():
        raise Invalid({"file": ["The file is empty."]})
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        headers = [unescape_formula(header.strip()) for header in next(reader)]
        rows: list[tuple[int, list[str]]] = []
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise Invalid({"file": [f"Line {reader.line_num}: malformed CSV ({exc})."]}) from exc
    if len(set(headers)) != len(headers):
        raise Invalid({"file": ["Two columns have the same header."]})
    return Table(decoded.encoding, delimiter, headers, rows, encoding_warnings(decoded))


def column_mapping(headers: Sequence[str], given: Mapping[str, str | None]) -> dict[str, str]:
    """Header -> field: what the user gave, else what we recognise; unknown ones are left out."""
    unknown_targets = [t for t in given.values() if t is not None and t not in FIELDS]
    if unknown_targets:
        raise Invalid({"mapping": [f"Unknown fields: {', '.join(map(str, unknown_targets))}."]})
    missing = [header for header in given if header not in headers]
    if missing:
        raise Invalid({"mapping": [f"No such columns in the file: {', '.join(missing)}."]})
    targets = [target for target in given.values() if target is not None]
    twice = sorted({target for target in targets if targets.count(target) > 1})
    if twice:
        raise Invalid({"mapping": [f"Two columns for one field: {', '.join(twice)}."]})
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        target = given[header] if header in given else HEADER_ALIASES.get(_fold(header))
        if target is not None and target not in taken:
            mapping[header] = target
            taken.add(target)
    if "name" not in taken and not {"first_name", "last_name"} & taken:
        raise Invalid(
            {"mapping": ["No column for the name (e.g. Firma, Company or name); map one."]}
        )
    return mapping


def row_values(
    headers: Sequence[str], cells: Sequence[str], mapping: Mapping[str, str]
) -> dict[str, Any]:
    """The fields of one row: empty cells left out, a formula's escape undone, lists split,
    and, in a file without a house-number column, the house number split off the street."""
    values: dict[str, Any] = {}
    for header, cell in zip(headers, cells, strict=False):
        field = mapping.get(header)
        value = unescape_formula(cell.strip())
        if field is None or not value:
            continue
        if field in LIST_FIELDS:
            values[field] = split_list(value)
        else:
            values[field] = value
    street = values.get("street")
    # Only where the file has no column for it: else a street written without a number of
    # its own ("Warnowallee 20b", house number empty) is kept as it is.
    if street and "house_number" not in mapping.values():
        street = street.splitlines()[0].strip()
        match = _HOUSE_NUMBER.match(street)
        if match:
            values["street"], values["house_number"] = (
                match["street"].strip().rstrip(","),
                match["number"],
            )
        else:
            values["street"] = street
    return values


def raw_row(headers: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    """A row as the file has it (for the error report), formulas' escapes undone: the
    report escapes them again when it is written."""
    return {header: unescape_formula(cell) for header, cell in zip(headers, cells, strict=False)}


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV as German Excel opens it: UTF-8 with BOM, semicolons, CRLF; no cell that a
    spreadsheet would take for a formula (see escape_formula)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([escape_formula(column) for column in columns])
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return escape_formula(join_list([str(item) for item in value]))
    return escape_formula(str(value))


# CSV injection: a spreadsheet takes a cell that starts with one of these for a formula
# (=HYPERLINK(...), =cmd|...). Such a cell is written with an apostrophe before it (as
# OWASP recommends; spreadsheets show it as text), and the import takes one apostrophe
# off again, in every file: before one of these it never belongs to a name or address.
_FORMULA_START = "=+-@\t\r"
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
_TO_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
# Numbers and phone numbers ("+49 381 123456", "-12.5", "-") are no formulas that could do
# harm, and stay readable.
_HARMLESS = re.compile(r"[0-9 +\-()/.,]*")


def escape_formula(text: str) -> str:
    """``text`` as a cell that no spreadsheet runs. A value that already starts with
    apostrophes before a formula character gets one more, so that
    ``unescape_formula(escape_formula(text)) == text`` for every text."""
    if _TO_ESCAPE.match(text) and not (text[0] in _FORMULA_START and _HARMLESS.fullmatch(text)):
        return "'" + text
    return text


def unescape_formula(cell: str) -> str:
    """A cell's value: one apostrophe taken off a cell that starts with apostrophes before a
    formula character (our export's escape, or another program's)."""
    return cell[1:] if _ESCAPED.match(cell) else cell


def join_list(items: Sequence[str]) -> str:
    """Tags or needs in one cell: joined with "; ". An item with a ";" or a '"' in it, or a
    single item with a comma, is put in double quotes (inner ones doubled, as in CSV), so
    that split_list gives back exactly these items."""
    return f"{LIST_SEPARATOR} ".join(
        _quoted(item) if _needs_quotes(item, alone=len(items) == 1) else item for item in items
    )


def _needs_quotes(item: str, *, alone: bool) -> bool:
    return any(char in item for char in ';"\r\n') or (alone and "," in item)


def _quoted(item: str) -> str:
    return '"' + item.replace('"', '""') + '"'


def split_list(cell: str) -> list[str]:
    """The items of a list cell: split on ";" if the cell has one (our export, Outlook),
    else on "," (other programs); double quotes keep an item whole."""
    delimiter = LIST_SEPARATOR if LIST_SEPARATOR in cell else ","
    reader = csv.reader(io.StringIO(cell, newline=""), delimiter=delimiter, skipinitialspace=True)
    return [item.strip() for cells in reader for item in cells if item.strip()]
