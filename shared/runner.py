"""``quartier run``: the whole system on one machine.

Starts the embedded engines where no server is configured, migrates, creates the first
admin, then runs the APIs, a worker per service, the scheduler and the mail sink as child
processes until Ctrl-C, when it stops every one of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from shared.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from shared.settings import (
    DEFAULT_PORTS,
    EMBEDDED_PG_PORT,
    EMBEDDED_REDIS_PORT,
    EMBEDDED_SMTP_PORT,
    SERVICES,
    load_or_create_dev_secret,
    service_database_url,
)

READY_TIMEOUT = 90.0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def say(message: str) -> None:
    print(f"quartier: {message}", flush=True)


@dataclass
class System:
    var_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    sink: object | None = None

    def spawn(self, name: str, *args: str) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared", *args],
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
        )
        self.children.append((name, process))

    def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        # Children of children (gunicorn and celery workers) share the group: sweep it.
        for _name, process in self.children:
            _signal_group(process, signal.SIGKILL)
        self.children.clear()
        if self.sink is not None:
            self.sink.stop()  # type: ignore[attr-defined]
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def run_system(with_workers: bool = True) -> int:
    started = time.monotonic()
    var_dir = Path(os.environ.get("QUARTIER_VAR_DIR", "var")).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["QUARTIER_VAR_DIR"] = str(var_dir)
    env.setdefault("SECRET_KEY", load_or_create_dev_secret(var_dir))
    system = System(var_dir, env)

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Also when started with SIGINT ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _start_engines(system)
        _prepare_databases(system)
        _start_processes(system, with_workers)
        urls = {name: f"http://127.0.0.1:{_port(name)}" for name in SERVICES}
        _wait_ready(system, urls)
        say(f"ready in {time.monotonic() - started:.1f} s")
        for name, url in urls.items():
            say(f"{name:<10} {url}/api/docs  (OpenAPI: {url}/api/v1/openapi.json)")
        say(f"mail       {_shown(var_dir / 'mail')} (quartier mail list)")
        say("press Ctrl-C to stop")
        while True:
            for name, process in system.children:
                if process.poll() is not None:
                    say(f"{name} exited with {process.returncode}; stopping")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except RuntimeError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        system.stop()
        say("stopped")


def _port(service: str) -> int:
    return int(os.environ.get(f"{service.upper()}_PORT", DEFAULT_PORTS[service]))


def _engine_port(name: str, default: int) -> int:
    return int(os.environ.get(f"QUARTIER_{name}_PORT", default))


def _start_engines(system: System) -> None:
    env = system.env
    if not env.get("DATABASE_URL") and not all(
        env.get(f"{name.upper()}_DATABASE_URL") for name in SERVICES
    ):
        port = _engine_port("PG", EMBEDDED_PG_PORT)
        system.postgres = EmbeddedPostgres(system.var_dir / "postgres", port)
        system.postgres.start()
        env["DATABASE_URL"] = system.postgres.url()
        say(f"PostgreSQL (embedded) on 127.0.0.1:{port}, data in {_shown(system.postgres.datadir)}")
    if not env.get("REDIS_URL"):
        port = _engine_port("REDIS", EMBEDDED_REDIS_PORT)
        system.redis = EmbeddedRedis(system.var_dir / "redis", port)
        system.redis.start()
        env["REDIS_URL"] = system.redis.url()
        say(f"Redis (embedded) on 127.0.0.1:{port}, data in {_shown(system.redis.datadir)}")
    if not env.get("SMTP_URL"):
        from shared.smtp_sink import start_sink

        port = _engine_port("SMTP", EMBEDDED_SMTP_PORT)
        system.sink, _handler = start_sink(port=port, folder=system.var_dir / "mail")
        env["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        say(f"SMTP sink on 127.0.0.1:{port}, mail kept in {_shown(system.var_dir / 'mail')}")


def _prepare_databases(system: System) -> None:
    from shared.migrations import upgrade

    env = system.env
    for name in SERVICES:
        key = f"{name.upper()}_DATABASE_URL"
        if not env.get(key):
            env[key] = service_database_url(env["DATABASE_URL"], name)
            server = env["DATABASE_URL"]
            database = env[key].rsplit("/", 1)[-1].split("?")[0]
            if ensure_database(server, database):
                say(f"created database {database}")
        upgrade(name, env[key])
    say("databases migrated")
    _first_admin(system)


def _first_admin(system: System) -> None:
    """On the first start, an admin whose password is printed once."""
    from services.contacts import services
    from shared.db import Database

    database = Database(system.env["CONTACTS_DATABASE_URL"])
    try:
        with database.session() as session:
            if services.count_users(session):
                return
            password = services.generate_password()
            services.create_user(
                session, email="admin@quartier.localhost", role="admin", password=password
            )
    finally:
        database.dispose()
    say("created the first admin; the password is shown only now:")
    say("  email:    admin@quartier.localhost")
    say(f"  password: {password}")


def _start_processes(system: System, with_workers: bool) -> None:
    for name in SERVICES:
        system.spawn(f"{name}-api", "api", name, "--port", str(_port(name)))
    if with_workers:
        for name in SERVICES:
            system.spawn(f"{name}-worker", "worker", name, "--concurrency", "2")
        system.spawn("beat", "beat", "--loglevel", "WARNING")


def _wait_ready(system: System, urls: dict[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = dict(urls)
    while pending:
        for name, url in list(pending.items()):
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    pending.pop(name)
            except requests.RequestException:
                pass
        for name, process in system.children:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while starting")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {READY_TIMEOUT:.0f} s: {', '.join(pending)}")
        time.sleep(0.2)
