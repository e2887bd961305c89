"""Test fixtures on real engines (a pytest plugin; ``pytest_plugins = ["shared.testing"]``).

PostgreSQL and Redis are embedded ones started once per test session, unless
TEST_DATABASE_URL / TEST_REDIS_URL name servers to use. Every service gets a fresh database
for the session, migrated by its own Alembic scripts. Tests stay apart by using random
names and addresses rather than by truncating tables.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.embedded import EmbeddedPostgres, EmbeddedRedis, drop_database, ensure_database
from shared.net import free_port, wait_for_port
from shared.settings import SERVICES, Settings, service_database_url
from shared.smtp_sink import SinkHandler, start_sink


def start_embedded_postgres(datadir: Path, attempts: int = 3) -> EmbeddedPostgres:
    """An embedded PostgreSQL on a free port; another port if one was taken meanwhile."""
    for attempt in range(attempts):
        server = EmbeddedPostgres(datadir, free_port())
        try:
            server.start()
            return server
        except (RuntimeError, subprocess.CalledProcessError):
            server.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_embedded_redis(datadir: Path, attempts: int = 3) -> EmbeddedRedis:
    """An embedded Redis (nothing kept on disk) on a free port, retried like the above."""
    for attempt in range(attempts):
        server = EmbeddedRedis(datadir, free_port())
        try:
            server.start(persist=False)
            return server
        except RuntimeError:
            server.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class Engines:
    database_server: str
    redis_url: str
    databases: dict[str, str]
    tmp: Path


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    from shared.migrations import upgrade

    tmp = tmp_path_factory.mktemp("engines")
    postgres = redis = None
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        postgres = start_embedded_postgres(tmp / "postgres")
        server = postgres.url()
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        redis = start_embedded_redis(tmp / "redis")
        redis_url = redis.url()
    run_id = secrets.token_hex(4)
    databases = {}
    for name in SERVICES:
        url = service_database_url(server, name, prefix=f"test_{run_id}")
        ensure_database(server, url.rsplit("/", 1)[-1])
        upgrade(name, url)
        databases[name] = url
    try:
        yield Engines(server, redis_url, databases, tmp)
    finally:
        for url in databases.values():
            drop_database(server, url.rsplit("/", 1)[-1])
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()


@pytest.fixture(autouse=True)
def _queues_emptied(request: pytest.FixtureRequest) -> None:
    """A test on the engines starts with the services' queues empty. Earlier tests leave
    tasks behind (a contacts worker relays every event the register's tests committed to
    the visits and newsletter queues); a worker this test starts would run them all before
    the tasks the test waits for."""
    if "engines" not in request.fixturenames:
        return
    from kombu import Connection

    engines: Engines = request.getfixturevalue("engines")
    with Connection(engines.redis_url) as connection:
        for queue in SERVICES:
            connection.default_channel.queue_purge(queue)


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SinkHandler]:
    """A real SMTP server (aiosmtpd) for the whole session; find mails by recipient."""
    controller, handler = start_sink(folder=tmp_path_factory.mktemp("mail"))
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def secret_key() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def make_settings(
    engines: Engines, smtp_sink: SinkHandler, secret_key: str
) -> Callable[..., Settings]:
    def make(service: str, **overrides: Any) -> Settings:
        ports = {name: free_port() for name in SERVICES}
        values: dict[str, Any] = {
            "service": service,
            "env": "test",
            "secret_key": secret_key,
            "database_url": engines.databases[service],
            "redis_url": engines.redis_url,
            "smtp_url": f"smtp://127.0.0.1:{smtp_sink.port}",
            "var_dir": engines.tmp / "var",
            "ratelimit_enabled": False,
            "service_urls": {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        }
        values.update(overrides)
        return Settings(**values)

    return make


def _service_app(service: str, make_settings: Callable[..., Settings]) -> Flask:
    import importlib

    module = importlib.import_module(f"services.{service}.app")
    app: Flask = module.create_app(make_settings(service))
    app.config["TESTING"] = True
    return app


@pytest.fixture(scope="session")
def contacts_app(make_settings: Callable[..., Settings]) -> Flask:
    return _service_app("contacts", make_settings)


@pytest.fixture(scope="session")
def visits_app(make_settings: Callable[..., Settings]) -> Flask:
    return _service_app("visits", make_settings)


@pytest.fixture(scope="session")
def newsletter_app(make_settings: Callable[..., Settings]) -> Flask:
    return _service_app("newsletter", make_settings)


@pytest.fixture(scope="session")
def apps(contacts_app: Flask, visits_app: Flask, newsletter_app: Flask) -> dict[str, Flask]:
    return {"contacts": contacts_app, "visits": visits_app, "newsletter": newsletter_app}


@pytest.fixture
def contacts_client(contacts_app: Flask) -> FlaskClient:
    return contacts_app.test_client()


@pytest.fixture
def visits_client(visits_app: Flask) -> FlaskClient:
    return visits_app.test_client()


@pytest.fixture
def newsletter_client(newsletter_app: Flask) -> FlaskClient:
    return newsletter_app.test_client()


@pytest.fixture
def cli_env(engines: Engines, secret_key: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``quartier`` command on the test databases."""
    return {
        "CONTACTS_DATABASE_URL": engines.databases["contacts"],
        "REDIS_URL": engines.redis_url,
        "SECRET_KEY": secret_key,
        "QUARTIER_VAR_DIR": str(tmp_path),
        "QUARTIER_ENV": "test",
    }


@contextmanager
def own_database(engines: Engines, service: str, label: str) -> Iterator[str]:
    """The URL of a new, empty database for ``service`` on the test server, dropped at the
    end: for a test that must know every row there, or migrates step by step."""
    url = service_database_url(
        engines.database_server, service, prefix=f"{label}_{secrets.token_hex(4)}"
    )
    name = url.rsplit("/", 1)[-1]
    ensure_database(engines.database_server, name)
    try:
        yield url
    finally:
        drop_database(engines.database_server, name)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.org"


@pytest.fixture
def staff_token(contacts_app: Flask, secret_key: str) -> Callable[[str], str]:
    """A real user of the given role, created in contacts, and a token issued for it."""
    from services.contacts import services as contacts_services
    from shared.db import get_database

    def make(role: str = "coordinator") -> str:
        password = secrets.token_urlsafe(16)
        email = unique_email(role)
        with get_database(contacts_app).session() as session:
            contacts_services.create_user(session, email=email, role=role, password=password)
        response = contacts_app.test_client().post(
            "/api/v1/auth/token", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return str(response.get_json()["access_token"])

    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def celery_worker_for(apps: dict[str, Flask]) -> Iterator[Callable[..., Any]]:
    """Start a real Celery worker (in a thread of this process) on a service's queue."""
    from celery.contrib.testing.worker import start_worker

    from shared.celery_app import get_celery

    stack: list[Any] = []

    def start(service: str, concurrency: int = 1) -> Any:
        celery = get_celery(apps[service])
        context = start_worker(
            celery,
            pool="threads",
            concurrency=concurrency,
            perform_ping_check=False,
            queues=[service],
            shutdown_timeout=30,
            loglevel="WARNING",
        )
        worker = context.__enter__()
        stack.append(context)
        return worker

    yield start
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture
def worker_process(
    make_settings: Callable[..., Settings], engines: Engines
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a service's real Celery worker as a separate process (it can be killed)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(service: str, concurrency: int = 1, **env_overrides: str) -> subprocess.Popen[bytes]:
        settings = make_settings(service)
        env = dict(os.environ)
        env.update(
            {
                "QUARTIER_ENV": "test",
                "SECRET_KEY": settings.secret_key,
                f"{service.upper()}_DATABASE_URL": settings.database_url,
                "REDIS_URL": settings.redis_url,
                "SMTP_URL": settings.smtp_url,
                "QUARTIER_VAR_DIR": str(settings.var_dir),
                **env_overrides,
            }
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared",
                "worker",
                service,
                "-c",
                str(concurrency),
                "--loglevel",
                "WARNING",
            ],
            env=env,
            start_new_session=True,
        )
        processes.append(process)
        time.sleep(0.5)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            stop_process(process, timeout=15)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is not gone within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def api_process(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a service's API as production does (``quartier api``: gunicorn) on a free
    port, for what only the web server does; returns the port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(service: str) -> int:
        port = free_port()
        log = tmp_path / f"{service}-api.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shared",
                    "api",
                    service,
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                env={**os.environ, **cli_env, "LOG_LEVEL": "WARNING"},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        if not wait_for_port("127.0.0.1", port, timeout=60):
            pytest.fail(f"the {service} API did not start:\n{log.read_text()}")
        return port

    yield start
    for process in processes:
        stop_process(process, timeout=30)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
