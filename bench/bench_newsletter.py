"""Newsletter delivery: a campaign to N recipients (``BENCH_RECIPIENTS``, default 100000)
sent by 2 Celery worker processes into a local aiosmtpd sink, beside a bare smtplib loop
over one connection into the same sink, in the same run (``BENCH_BARE`` mails, default
20000).

The sink runs in processes of its own (``BENCH_SINK_PROCESSES``, default one per core)
that share one port with SO_REUSEPORT, each aiosmtpd's SMTP protocol on a uvloop event
loop; it counts the mails and keeps nothing.

Prints mails/s of both, their ratio, the workers' peak memory (RSS sampled with psutil)
and the RSS early and late in the campaign (flat is the goal), the CPU time per mail of
the workers, the sink, PostgreSQL and Redis during the campaign (where the time goes), and
the cost of one message: the compiled template against building it from scratch with the
stdlib.

Run: ``BENCH_RECIPIENTS=100000 .venv/bin/python -m bench bench_newsletter``
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

BODY = """# Neues aus dem Netzwerk Groß Klein

Hallo {{ name }},

am **Donnerstag, 17. Dezember** laden wir zum Netzwerktreffen der Gewerbetreibenden in
Schmarl und Groß Klein ein. Es gibt Neuigkeiten zu Fördermitteln, zur Fachkräftesuche und
zur Digitalisierung im Einzelhandel.

- 18:00 Uhr Begrüßung im Stadtteilzentrum
- 18:15 Uhr Kurzvorträge: Förderprogramme 2027, Ausbildung im Quartier
- 19:00 Uhr Austausch bei Getränken

Für {{ organisation }} reservieren wir gern einen Platz. [Jetzt anmelden](https://termine.example.org/t/42)
"""


def _sink(port: int, counter: Any, ready: Any) -> None:
    """One process of the SMTP sink: aiosmtpd's SMTP protocol on a uvloop event loop,
    listening with SO_REUSEPORT so that the sink's processes share the port (the kernel
    spreads the connections over them). It counts every mail and keeps nothing."""
    import asyncio

    import uvloop
    from aiosmtpd.smtp import SMTP

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with counter.get_lock():
                counter.value += len(envelope.rcpt_tos)
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Counting()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.localhost", enable_SMTPUTF8=True),
            "127.0.0.1",
            port,
            reuse_port=True,
        )
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        ready.set()
        await stop.wait()
        server.close()
        await server.wait_closed()

    uvloop.run(serve())


def _seed(database_url: str, count: int) -> uuid.UUID:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    list_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO lists (id, name, description, public, training_signup, created_at)"
                 " VALUES (:id, 'Netzwerk Groß Klein', '', true, false, now())"),
            {"id": list_id},
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO subscribers (id, email, name, state, token, created_at, updated_at)"
                 " SELECT gen_random_uuid(), 'empfaenger' || i || '@example.org',"
                 " 'Empfängerin Nr. ' || i, 'active', md5(random()::text || i), now(), now()"
                 " FROM generate_series(1, :n) AS i"),
            {"n": count},
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO subscriptions (id, subscriber_id, list_id, status, created_at,"
                 " confirmed_at) SELECT gen_random_uuid(), id, :l, 'confirmed', now(), now()"
                 " FROM subscribers"),
            {"l": list_id},
        )  # fmt: skip
    engine.dispose()
    return list_id


def _bare_loop(port: int, count: int) -> float:
    """The baseline: one prebuilt message, sent ``count`` times over one connection."""
    from shared.mail import build_message

    message = build_message(
        sender="netzwerk@example.org",
        to="empfaenger@example.org",
        subject="Neues aus dem Netzwerk",
        text=BODY,
        html=f"<p>{BODY}</p>",
    ).as_bytes()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        started = time.perf_counter()
        for i in range(count):
            conn.sendmail("netzwerk@example.org", [f"bare{i}@example.org"], message)
        return count / (time.perf_counter() - started)


def _per_message_cost() -> tuple[float, float]:
    """Microseconds per message: compiled template vs. the stdlib from scratch."""
    from services.newsletter.rendering import compile_campaign
    from shared.mail import address, build_message
    from shared.settings import CompanyDetails

    compiled = compile_campaign(
        campaign_id=uuid.uuid4(),
        sender="Netzwerk <netzwerk@example.org>",
        subject="Neues aus dem Netzwerk Groß Klein",
        preheader="Netzwerktreffen am 17. Dezember",
        body=BODY,
        body_format="markdown",
        explicit_text=None,
        company=CompanyDetails(),
    )
    rounds = 2000
    started = time.perf_counter()
    for i in range(rounds):
        compiled.render(
            key=f"c.{i}",
            email=f"r{i}@example.org",
            name=f"Empfängerin Nr. {i}",
            organisation="Bäckerei Müller",
            token="t" * 32,
            unsubscribe_url=f"https://n.example.org/u/{i}",
            preferences_url=f"https://n.example.org/p?token={i}",
        )
    ours = (time.perf_counter() - started) / rounds * 1e6
    html = f"<p>{BODY}</p>"
    started = time.perf_counter()
    for i in range(rounds):
        build_message(
            sender="Netzwerk <netzwerk@example.org>",
            to=address(f"r{i}@example.org", f"Empfängerin Nr. {i}"),
            subject="Neues aus dem Netzwerk Groß Klein",
            text=BODY,
            html=html,
            headers={"List-Unsubscribe": f"<https://n.example.org/u/{i}>"},
        ).as_bytes()
    stdlib = (time.perf_counter() - started) / rounds * 1e6
    return ours, stdlib


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            main = psutil.Process(pid)
            for proc in (main, *main.children(recursive=True)):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


class Sampler(threading.Thread):
    """RSS of every worker process (main and pool children), four times a second."""

    def __init__(self, pids: list[int], progress: Any) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.progress = progress
        self.peak: dict[int, int] = {}
        self.timeline: list[tuple[int, int]] = []  # (mails sent so far, largest child RSS)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            largest_child = 0
            for pid in self.pids:
                try:
                    main = psutil.Process(pid)
                    processes = [main, *main.children(recursive=True)]
                    for proc in processes:
                        rss = proc.memory_info().rss
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
                        if proc is not main:
                            largest_child = max(largest_child, rss)
                except psutil.Error:
                    continue
            self.timeline.append((self.progress.value, largest_child))


def main() -> None:
    from sqlalchemy import text

    from services.newsletter import campaigns
    from services.newsletter.app import create_app
    from shared.celery_app import get_celery
    from shared.db import get_database
    from shared.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
    from shared.migrations import upgrade
    from shared.net import free_port
    from shared.settings import SERVICES, Settings, service_database_url

    count = int(os.environ.get("BENCH_RECIPIENTS", "100000"))
    bare_count = min(count, int(os.environ.get("BENCH_BARE", "20000")))
    tmp = Path(tempfile.mkdtemp(prefix="bench-newsletter-"))
    postgres = EmbeddedPostgres(tmp / "postgres", free_port())
    redis = EmbeddedRedis(tmp / "redis", free_port())
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    smtp_port = free_port()
    sink_processes = int(os.environ.get("BENCH_SINK_PROCESSES", str(os.cpu_count() or 2)))
    sinks = [
        (context.Process(target=_sink, args=(smtp_port, counter, ready), daemon=True), ready)
        for ready in (context.Event() for _ in range(max(1, sink_processes)))
    ]
    workers: list[subprocess.Popen[bytes]] = []
    app = None
    try:
        postgres.start()
        redis.start(persist=False)
        for sink, ready in sinks:
            sink.start()
            if not ready.wait(30):
                raise RuntimeError("the SMTP sink did not start")
        database_url = service_database_url(postgres.url(), "newsletter", prefix="bench")
        ensure_database(postgres.url(), database_url.rsplit("/", 1)[-1])
        upgrade("newsletter", database_url)
        list_id = _seed(database_url, count)
        ours_us, stdlib_us = _per_message_cost()

        load_before = os.getloadavg()[0]
        bare_before = _bare_loop(smtp_port, bare_count)
        counter.value = 0

        secret = secrets.token_urlsafe(48)
        settings = Settings(
            service="newsletter",
            env="test",
            secret_key=secret,
            database_url=database_url,
            redis_url=redis.url(),
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            var_dir=tmp / "var",
            ratelimit_enabled=False,
            service_urls={s: f"http://127.0.0.1:{free_port()}" for s in SERVICES},
        )
        env = dict(os.environ)
        env.update(
            {
                "QUARTIER_ENV": "test",
                "SECRET_KEY": secret,
                "NEWSLETTER_DATABASE_URL": database_url,
                "REDIS_URL": redis.url(),
                "SMTP_URL": settings.smtp_url,
                "QUARTIER_VAR_DIR": str(tmp / "var"),
                "NEWSLETTER_RATE_PER_SECOND": os.environ.get("NEWSLETTER_RATE_PER_SECOND", "20000"),
                "NEWSLETTER_CHUNK": os.environ.get("NEWSLETTER_CHUNK", "50"),
                "NEWSLETTER_PARALLELISM": "2",
                "NEWSLETTER_SMTP_CONNECTIONS": os.environ.get("NEWSLETTER_SMTP_CONNECTIONS", "10"),
                "LOG_LEVEL": "WARNING",
            }
        )
        for _ in range(2):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "shared", "worker", "newsletter", "-c", "1",
                     "--loglevel", "WARNING"],
                    env=env,
                    start_new_session=True,
                )
            )  # fmt: skip
        app = create_app(settings)
        celery = get_celery(app)
        deadline = time.monotonic() + 60
        while len(celery.control.ping(timeout=1)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)

        sampler = Sampler([w.pid for w in workers], counter)
        sampler.start()
        postmaster = int((tmp / "postgres" / "postmaster.pid").read_text().split()[0])
        groups = {
            "workers": [w.pid for w in workers],
            "sink": [sink.pid or 0 for sink, _ready in sinks],
            "postgres": [postmaster],
            "redis": [redis.process.pid if redis.process else 0],
        }
        cpu_before = {name: _cpu_seconds(pids) for name, pids in groups.items()}
        with app.app_context(), get_database(app).session() as session:
            campaign = campaigns.create_campaign(
                session,
                subject="Neues aus dem Netzwerk Groß Klein",
                preheader="Netzwerktreffen am 17. Dezember",
                body=BODY,
                list_ids=[list_id],
            )
            started = time.perf_counter()
            campaigns.start_campaign(session, campaign.id)
            timeout = max(300.0, count / 50)
            while time.perf_counter() - started < timeout:
                state = session.execute(
                    text("SELECT state FROM campaigns WHERE id = :c"), {"c": campaign.id}
                ).scalar()
                session.rollback()
                if state in ("sent", "paused"):
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            sent, span = session.execute(
                text(
                    "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at))"
                    " FROM deliveries WHERE campaign_id = :c AND state = 'sent'"
                ),
                {"c": campaign.id},
            ).one()
            session.rollback()
        sampler.stop.set()
        sampler.join()
        in_sink = counter.value
        # The baseline again after the campaign: the faster of the two counts (the stronger
        # baseline), and the pair shows how steady the machine was.
        bare_after = _bare_loop(smtp_port, bare_count)
        bare_rate = max(bare_before, bare_after)
        load_after = os.getloadavg()[0]
        cpu = {name: _cpu_seconds(pids) - cpu_before[name] for name, pids in groups.items()}

        rate = sent / elapsed
        mib = 1024 * 1024
        peak = max(sampler.peak.values()) / mib if sampler.peak else 0.0
        children = [rss for _done, rss in sampler.timeline if rss]
        early = children[len(children) // 10] / mib if children else 0.0
        late = children[-1] / mib if children else 0.0
        print(f"recipients: {count}, state: {state}, sent: {sent}, in the sink: {in_sink}")
        print(f"campaign (2 workers):  {rate:,.0f} mails/s over {elapsed:.1f} s "
              f"(first to last mail: {sent / float(span or elapsed):,.0f} mails/s)")  # fmt: skip
        print(
            f"bare smtplib loop:     {bare_rate:,.0f} mails/s ({bare_count} mails, one connection;"
            f" {bare_before:,.0f} before the campaign, {bare_after:,.0f} after it)"
        )
        print(f"SMTP sink:             {len(sinks)} aiosmtpd processes on one port (uvloop)")
        print(f"ratio:                 {rate / bare_rate:.2f}x the bare loop")
        print(f"worker peak RSS:       {peak:.0f} MiB (largest of the worker processes)")
        print(
            f"sending process RSS:   {early:.0f} MiB at 10 % of the campaign,"
            f" {late:.0f} MiB at the end"
        )
        per_mail = ", ".join(
            f"{name} {seconds / max(1, sent) * 1e6:.0f}" for name, seconds in cpu.items()
        )
        print(f"CPU per mail (µs):     {per_mail}")
        cores = os.cpu_count() or 0
        print(
            f"load average:          {load_before:.1f} at start, {load_after:.1f} at end;"
            f" {cores} cores"
        )
        print(
            f"one message:           {ours_us:.0f} µs compiled"
            f" vs {stdlib_us:.0f} µs with the stdlib"
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        if app is not None:
            get_database(app).dispose()
        for sink, _ready in sinks:
            if sink.is_alive():
                sink.terminate()
                sink.join(10)
        redis.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
