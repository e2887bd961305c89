"""``quartier run`` as a new user starts it: everything comes up, Ctrl-C stops everything,
and a second start keeps the data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from shared.net import free_port, port_open
from shared.settings import SERVICES

pytestmark = pytest.mark.slow

READY = re.compile(r"ready in ([\d.]+) s")


class Run:
    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail("quartier run did not get ready:\n" + "\n".join(self.lines[-60:]))

    def interrupt(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def text(self) -> str:
        return "\n".join(self.lines)


def _descendants_with(var_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env_match = proc.environ().get("QUARTIER_VAR_DIR") == str(var_dir)
            if env_match or any(str(var_dir) in part for part in proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_run_starts_everything_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    ports = {f"{name.upper()}_PORT": str(free_port()) for name in SERVICES}
    engine_ports = {
        "QUARTIER_PG_PORT": str(free_port()),
        "QUARTIER_REDIS_PORT": str(free_port()),
        "QUARTIER_SMTP_PORT": str(free_port()),
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY")
        and not key.endswith("_DATABASE_URL")
    }
    env.update(ports)
    env.update(engine_ports)
    env.update({"QUARTIER_VAR_DIR": str(var_dir), "LOG_LEVEL": "WARNING"})
    for name in SERVICES:
        env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{ports[name.upper() + '_PORT']}"

    first = Run(env)
    try:
        first.wait_for(READY, timeout=120)
        password = re.search(r"password: (\S+)", first.text())
        assert password, first.text()
        for name in SERVICES:
            base = f"http://127.0.0.1:{ports[name.upper() + '_PORT']}"
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
            assert requests.get(f"{base}/api/v1/openapi.json", timeout=5).json()["info"]["title"]
            assert "swagger-ui-bundle.js" in requests.get(f"{base}/api/docs", timeout=5).text
        contacts = f"http://127.0.0.1:{ports['CONTACTS_PORT']}"
        token = requests.post(
            f"{contacts}/api/v1/auth/token",
            json={"email": "admin@quartier.localhost", "password": password.group(1)},
            timeout=5,
        )
        assert token.status_code == 200
    finally:
        assert first.interrupt() == 0
    assert "stopped" in first.text()
    assert _descendants_with(var_dir) == []
    for port in [*ports.values(), *engine_ports.values()]:
        assert not port_open("127.0.0.1", int(port))

    second = Run(env)
    try:
        second.wait_for(READY, timeout=120)
        assert "created the first admin" not in second.text()
        token = requests.post(
            f"{contacts}/api/v1/auth/token",
            json={"email": "admin@quartier.localhost", "password": password.group(1)},
            timeout=5,
        )
        assert token.status_code == 200, "the admin of the first run must still be there"
    finally:
        assert second.interrupt() == 0
    assert _descendants_with(var_dir) == []
