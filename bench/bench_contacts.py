"""Contacts: search under gunicorn beside /healthz, and the CSV import beside COPY.

Starts its own embedded PostgreSQL and Redis and a gunicorn on free ports, and stops them.
``BENCH_ROWS`` sets the number of organisations (default 100,000); ``BENCH_SECONDS`` the
length of each throughput run (default 10).

    BENCH_ROWS=100000 .venv/bin/python -m bench bench_contacts
"""

from __future__ import annotations

import io
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import requests

from shared.auth import issue_token
from shared.db import Database
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from shared.gunicorn_worker import WORKER_CLASS
from shared.migrations import upgrade
from shared.net import free_port, wait_for_port

SURNAMES = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Krause",
    "Meier",
    "Lehmann",
    "Köhler",
    "Groß",
    "Jürgens",
    "Möller",
    "Peters",
    "Thießen",
    "Öztürk",
    "Yılmaz",
    "Nowak",
    "Kowalski",
    "Petersen",
    "Hansen",
    "Jensen",
    "Voß",
    "Brandt",
    "Haase",
    "Kühn",
    "Ludwig",
    "Böhm",
]
FIRST_NAMES = [
    "Anja",
    "Jörg",
    "Jürgen",
    "Birgit",
    "Sönke",
    "Maik",
    "Ines",
    "Ümit",
    "Katrin",
    "Dörte",
    "Heiko",
    "Silke",
    "Björn",
    "Kai",
    "Tanja",
    "Maren",
    "Sven",
    "Ayşe",
    "Piotr",
    "Frauke",
]
TRADES = (
    ("Bäckerei", "Lebensmittelhandwerk"),
    ("Fleischerei", "Lebensmittelhandwerk"),
    ("Friseursalon", "Friseurhandwerk"),
    ("Blumenhaus", "Einzelhandel"),
    ("Kfz-Werkstatt", "Kraftfahrzeuge"),
    ("Elektro", "Elektrohandwerk"),
    ("Sanitär- und Heizungsbau", "Bauhandwerk"),
    ("Café", "Gastronomie"),
    ("Imbiss", "Gastronomie"),
    ("Physiotherapie", "Gesundheit"),
    ("Steuerberatung", "Beratung"),
    ("Malerbetrieb", "Bauhandwerk"),
    ("Tischlerei", "Holzhandwerk"),
    ("Optik", "Einzelhandel"),
    ("Apotheke", "Gesundheit"),
    ("Reisebüro", "Dienstleistung"),
    ("Fahrschule", "Bildung"),
    ("Pflegedienst", "Pflege"),
    ("Hausverwaltung", "Immobilien"),
    ("Getränkemarkt", "Einzelhandel"),
)
LEGAL_FORMS = ("GmbH", "UG (haftungsbeschränkt)", "e.K.", "GbR", "OHG", "KG", "", "", "")
STREETS = (
    ("Warnowallee", "18107", "Lütten Klein"),
    ("Gerüstbauerring", "18109", "Groß Klein"),
    ("Schiffbauerring", "18109", "Groß Klein"),
    ("Taklerring", "18109", "Groß Klein"),
    ("Ratzeburger Straße", "18109", "Groß Klein"),
    ("Kopenhagener Straße", "18107", "Lütten Klein"),
    ("Stockholmer Straße", "18107", "Lütten Klein"),
    ("Rügener Straße", "18109", "Lichtenhagen"),
    ("Helsinkier Straße", "18107", "Lütten Klein"),
    ("Turkuer Straße", "18107", "Lütten Klein"),
    ("Bergener Straße", "18107", "Lütten Klein"),
    ("Albert-Schweitzer-Straße", "18106", "Evershagen"),
    ("Maxim-Gorki-Straße", "18106", "Evershagen"),
    ("Schmarler Damm", "18106", "Schmarl"),
    ("Kolumbusring", "18106", "Schmarl"),
    ("Stephan-Jantzen-Ring", "18106", "Schmarl"),
    ("Güstrower Straße", "18109", "Groß Klein"),
    ("Kröpeliner Straße", "18055", "Stadtmitte"),
    ("Lange Straße", "18055", "Stadtmitte"),
    ("Doberaner Straße", "18057", "Kröpeliner-Tor-Vorstadt"),
    ("Budapester Straße", "18057", "Kröpeliner-Tor-Vorstadt"),
    ("Südring", "18059", "Südstadt"),
    ("Nobelstraße", "18059", "Südstadt"),
    ("Hamburger Straße", "18069", "Reutershagen"),
    ("Goerdelerstraße", "18069", "Reutershagen"),
    ("Kurt-Schumacher-Ring", "18146", "Dierkow"),
    ("Olof-Palme-Straße", "18147", "Toitenwinkel"),
    ("Mühlenstraße", "18119", "Warnemünde"),
    ("Am Strom", "18119", "Warnemünde"),
    ("Alexandrinenstraße", "18119", "Warnemünde"),
)
TAGS = ("Handwerk", "Einzelhandel", "BIWAQ", "Netzwerk", "Ausbildungsbetrieb", "Frühstück")
QUERIES = (
    "müller",
    "mueller",
    "gross klein",
    "bäckerei",
    "backerei mul",
    "warnowallee",
    "ratzeburger str",
    "schiffbauerr",
    "friseur",
    "kfz",
    "café",
    "steuerb",
    "krüger",
    "schmarl",
    "lütten kl",
    "optik",
    "hausverwaltung",
    "jürgens",
    "tischlerei wer",
    "apotheke",
)
CSV_COLUMNS = (
    "name",
    "legal_form",
    "sector",
    "street",
    "house_number",
    "postcode",
    "city",
    "district",
    "phone",
    "email",
    "tags",
)


def rows(count: int, seed: int = 7) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    result = []
    for i in range(count):
        trade, sector = rng.choice(TRADES)
        surname = rng.choice(SURNAMES)
        owner = surname if rng.random() < 0.6 else f"{rng.choice(FIRST_NAMES)} {surname}"
        street, postcode, district = rng.choice(STREETS)
        result.append(
            (
                f"{trade} {owner}",
                rng.choice(LEGAL_FORMS),
                sector,
                street,
                f"{rng.randint(1, 400)}{rng.choice(['', '', '', 'a', 'b'])}",
                postcode,
                "Rostock",
                district,
                f"0381 {rng.randint(100000, 9999999)}",
                f"kontakt{i}@betrieb{i}.example",
                "; ".join(rng.sample(TAGS, rng.randint(0, 2))),
            )
        )
    return result


def csv_bytes(data: list[tuple[str, ...]]) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(data)
    return out.getvalue().encode("utf-8-sig")


def time_import(url: str, content: bytes) -> tuple[float, float, int]:
    """(preview seconds, commit seconds, created) through the import's use cases."""
    from services.contacts.services import imports

    database = Database(url)
    try:
        with database.session() as session:
            started = time.perf_counter()
            record = imports.preview_import(
                session, content=content, filename="bench.csv", mapping=None, actor="bench"
            )
            previewed = time.perf_counter()
            done = imports.commit_import(
                session,
                record.id,
                mode="valid_only",
                actor="bench",
                background=False,
                enqueue=lambda _id: None,
            )
            committed = time.perf_counter()
            return previewed - started, committed - previewed, done.created_count
    finally:
        database.dispose()


def time_copy(url: str, content: bytes) -> float:
    """COPY of the same CSV into a table of its columns in the same database."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        columns = ", ".join(f"{name} text" for name in CSV_COLUMNS)
        conn.execute(f"CREATE TABLE IF NOT EXISTS bench_copy ({columns})")
        conn.execute("TRUNCATE bench_copy")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_copy FROM STDIN WITH (FORMAT csv, DELIMITER ';', HEADER true)"
            ) as copy,
        ):
            copy.write(content.decode("utf-8-sig"))
        conn.commit()
        return time.perf_counter() - started


def time_copy_organisations(url: str) -> float:
    """COPY of the organisations the import wrote (every column, already folded) into a
    table like organisations with all its indexes: the floor for writing these rows into
    the real table, beside the plain-text COPY above."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        data = io.BytesIO()
        with (
            conn.cursor() as cur,
            cur.copy("COPY organisations TO STDOUT WITH (FORMAT binary)") as copy,
        ):
            for block in copy:
                data.write(block)
        conn.execute("DROP TABLE IF EXISTS bench_copy_organisations")
        conn.execute("CREATE TABLE bench_copy_organisations (LIKE organisations INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_copy_organisations FROM STDIN WITH (FORMAT binary)") as copy,
        ):
            copy.write(data.getvalue())
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy_organisations")
        conn.commit()
        return elapsed


def latencies(
    call: Callable[[requests.Session, int], None], clients: int, per_client: int
) -> list[float]:
    found: list[float] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with requests.Session() as http:
            mine = []
            for n in range(per_client):
                started = time.perf_counter()
                call(http, index * per_client + n)
                mine.append(time.perf_counter() - started)
        with lock:
            found.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def throughput(
    call: Callable[[requests.Session, int], None], clients: int, seconds: float
) -> float:
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        with requests.Session() as http:
            n = 0
            while time.perf_counter() < deadline:
                call(http, index * 100_000 + n)
                n += 1
            counts[index] = n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    count = int(os.environ.get("BENCH_ROWS", "100000"))
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    with tempfile.TemporaryDirectory(prefix="bench-contacts-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        redis = EmbeddedRedis(Path(tmp) / "redis", free_port())
        pg.start()
        redis.start(persist=False)
        server = None
        try:
            ensure_database(pg.url(), "bench_contacts")
            url = pg.url("bench_contacts")
            upgrade("contacts", url)
            content = csv_bytes(rows(count))
            print(f"rows: {count:,}; CSV: {len(content) / 1e6:.1f} MB", flush=True)

            copy_seconds = time_copy(url, content)
            preview, commit, created = time_import(url, content)
            print(
                f"import: preview {preview:.1f} s + commit {commit:.1f} s = "
                f"{preview + commit:.1f} s ({created:,} created, "
                f"{count / (preview + commit):,.0f} rows/s)"
            )
            print(
                f"COPY of the same rows: {copy_seconds:.2f} s; "
                f"import/COPY = {(preview + commit) / copy_seconds:.1f}x "
                f"(commit alone {commit / copy_seconds:.1f}x)",
                flush=True,
            )

            print(
                "COPY of the organisations as the import wrote them into a table like "
                f"organisations (all its indexes): {time_copy_organisations(url):.2f} s",
                flush=True,
            )

            libpq = url.replace("postgresql+psycopg://", "postgresql://")
            # The search is measured in a steady state: without the import's dead tuples,
            # dirty pages or autovacuum work still going on beside it.
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                conn.execute("CHECKPOINT")

            secret = secrets.token_urlsafe(48)
            port = free_port()
            env = dict(
                os.environ,
                QUARTIER_ENV="development",
                SECRET_KEY=secret,
                CONTACTS_DATABASE_URL=url,
                REDIS_URL=redis.url(),
                LOG_LEVEL="WARNING",
                QUARTIER_VAR_DIR=str(Path(tmp) / "var"),
            )
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    os.environ.get("BENCH_API_WORKERS", "2"),
                    "--worker-class",
                    WORKER_CLASS,  # as `quartier api` serves it
                    "--threads",
                    os.environ.get("BENCH_API_THREADS", "4"),
                    "--log-level",
                    "warning",
                    "--no-control-socket",  # as `quartier api` serves it
                    "services.contacts.app:create_app()",
                ],
                env=env,
            )
            wait_for_port("127.0.0.1", port, timeout=60)
            base = f"http://127.0.0.1:{port}"
            token = issue_token(secret, subject="bench", role="viewer", ttl=timedelta(hours=1))
            headers = {"Authorization": f"Bearer {token}"}

            def search(http: requests.Session, n: int) -> None:
                response = http.get(
                    f"{base}/api/v1/search",
                    params={"q": QUERIES[n % len(QUERIES)]},
                    headers=headers,
                    timeout=30,
                )
                assert response.status_code == 200, response.text

            def health(http: requests.Session, n: int) -> None:
                assert http.get(f"{base}/healthz", timeout=30).status_code == 200

            latencies(search, 4, 10)  # warm up both workers and the caches
            latencies(health, 4, 10)
            for name, call in (("search", search), ("healthz", health)):
                values = latencies(call, 4, 100)
                print(
                    f"{name}, 4 clients: p50 {percentile(values, 50) * 1000:.1f} ms, "
                    f"p95 {percentile(values, 95) * 1000:.1f} ms",
                    flush=True,
                )
            search_rate = throughput(search, 20, seconds)
            health_rate = throughput(health, 20, seconds)
            print(
                f"throughput, 20 clients: search {search_rate:.0f}/s, healthz {health_rate:.0f}/s, "
                f"ratio {search_rate / health_rate:.2f}",
                flush=True,
            )
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            redis.stop()
            pg.stop()
