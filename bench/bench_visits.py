"""Sign-ups and confirmations for one training with few seats, fired by many concurrent
clients at the visits API under gunicorn, beside the service's trivial endpoint
(``/healthz``) in the same run, and a read of the training (two queries) as a floor for
any request that touches the database.

It starts what it needs (embedded PostgreSQL and Redis, the API under gunicorn on free
ports) and stops it. No worker runs: the mails stay queued in Redis. Scale with
``BENCH_SIGNUPS`` (default 500), ``BENCH_SEATS`` (25), ``BENCH_CLIENTS`` (50) and
``BENCH_API_WORKERS`` (gunicorn processes, 2).

    python -m bench bench_visits
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from shared.auth import issue_token, sign_link
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from shared.migrations import upgrade
from shared.net import free_port, wait_for_port

CONFIRM_PURPOSE = "visits.registration.confirm"


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wall: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[status] += 1

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rate = len(ordered) / self.wall if self.wall else 0.0
        errors = sum(n for s, n in self.statuses.items() if s >= 500)
        return (
            f"{self.name:<14} {len(ordered):>6} req  {rate:>8.1f} req/s  "
            f"p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms  5xx {errors}  "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


def _run(phase: Phase, clients: int, jobs: list[Any], call: Callable[..., Any]) -> list[Any]:
    local = threading.local()

    def work(job: Any) -> Any:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        response = call(session, job)
        phase.record(time.perf_counter() - started, response.status_code)
        return response

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(work, jobs))
    phase.wall = time.perf_counter() - began
    return results


def main() -> None:
    signups = int(os.environ.get("BENCH_SIGNUPS", "500"))
    seats = int(os.environ.get("BENCH_SEATS", "25"))
    clients = int(os.environ.get("BENCH_CLIENTS", "50"))
    api_workers = int(os.environ.get("BENCH_API_WORKERS", "2"))
    secret = secrets.token_urlsafe(48)

    with tempfile.TemporaryDirectory(prefix="bench-visits-") as tmp:
        root = Path(tmp)
        postgres = EmbeddedPostgres(root / "pg", free_port())
        redis = EmbeddedRedis(root / "redis", free_port())
        api = None
        postgres.start()
        try:
            redis.start(persist=False)
            ensure_database(postgres.url(), "bench_visits")
            database_url = postgres.url("bench_visits")
            upgrade("visits", database_url)
            port = free_port()
            env = {
                **os.environ,
                "QUARTIER_ENV": "production",
                "SECRET_KEY": secret,
                "VISITS_DATABASE_URL": database_url,
                "REDIS_URL": redis.url(),
                "RATELIMIT_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
                "QUARTIER_VAR_DIR": str(root / "var"),
                "VISITS_URL": f"http://127.0.0.1:{port}",
            }
            api = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shared",
                    "api",
                    "visits",
                    "--port",
                    str(port),
                    "--workers",
                    str(api_workers),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if not wait_for_port("127.0.0.1", port, timeout=60):
                raise RuntimeError("the visits API did not start")
            base = f"http://127.0.0.1:{port}"
            _measure(base, secret, signups, seats, clients, api_workers)
        finally:
            if api is not None:
                api.terminate()
                try:
                    api.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    api.kill()
                    api.wait()
            redis.stop()
            postgres.stop()


def _measure(
    base: str, secret: str, signups: int, seats: int, clients: int, api_workers: int
) -> None:
    token = issue_token(secret, subject="bench", role="coordinator", ttl=timedelta(hours=1))
    start = datetime.now(UTC) + timedelta(days=7)
    created = requests.post(
        f"{base}/api/v1/trainings",
        json={
            "title": "Benchmark-Schulung",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "capacity": seats,
            "status": "published",
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    created.raise_for_status()
    training_id = created.json()["id"]
    for _ in range(20):  # warm every gunicorn worker and its connection pool
        requests.get(f"{base}/healthz", timeout=10)
        requests.get(f"{base}/api/v1/public/trainings", timeout=10)

    sign_up = Phase("sign-up")
    emails = [f"bench-{uuid.uuid4().hex[:12]}@example.org" for _ in range(signups)]
    answers = _run(
        sign_up,
        clients,
        emails,
        lambda s, email: s.post(
            f"{base}/api/v1/public/trainings/{training_id}/registrations",
            json={"name": "Bench", "email": email},
            timeout=60,
        ),
    )
    ids = [a.json()["id"] for a in answers if a.status_code == 202]

    confirm = Phase("confirmation")
    confirmed = _run(
        confirm,
        clients,
        ids,
        lambda s, rid: s.post(
            f"{base}/api/v1/public/registrations/"
            f"{sign_link(secret, CONFIRM_PURPOSE, {'r': rid})}/confirm",
            headers={"Accept": "application/json"},
            timeout=60,
        ),
    )
    outcome = Counter(a.json().get("status") for a in confirmed if a.status_code == 200)

    read = Phase("read training")
    _run(
        read,
        clients,
        list(range(len(ids))),
        lambda s, _i: s.get(f"{base}/api/v1/public/trainings/{training_id}", timeout=60),
    )

    health = Phase("/healthz")
    _run(
        health,
        clients,
        list(range(len(ids))),
        lambda s, _i: s.get(f"{base}/healthz", timeout=60),
    )

    seats_after = requests.get(
        f"{base}/api/v1/trainings/{training_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    print(
        f"visits: {signups} sign-ups + confirmations, {seats} seats, {clients} concurrent "
        f"clients, gunicorn {api_workers} workers x 4 threads"
    )
    for phase in (sign_up, confirm, read, health):
        print("  " + phase.line())
    print(
        f"  confirmed {outcome.get('confirmed', 0)} (training says {seats_after['confirmed']}), "
        f"waitlisted {outcome.get('waitlisted', 0)} (training says {seats_after['waitlisted']})"
    )
    print(
        f"  confirmation throughput / trivial endpoint: {confirm.rate / health.rate:.2f}x; "
        f"sign-up: {sign_up.rate / health.rate:.2f}x"
    )
    if seats_after["confirmed"] != min(seats, signups):
        raise SystemExit("OVERBOOKED or underfilled: the benchmark failed")


if __name__ == "__main__":
    main()
