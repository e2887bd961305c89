"""docker-compose.yml stays honest with the code: the same commands, the same variables."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from shared.cli import main
from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _variables_the_code_reads() -> set[str]:
    source = (ROOT / "shared" / "settings.py").read_text()
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', source))
    for template in re.findall(r'env\.\w+\(\s*f"\{(?:prefix|name\.upper\(\))\}(_[A-Z_]+)"', source):
        names.update(f"{service.upper()}{template}" for service in SERVICES)
    return names


def test_every_quartier_command_in_compose_is_one_the_cli_accepts(compose: dict[str, Any]) -> None:
    commands = [
        spec["command"]
        for spec in compose["services"].values()
        if isinstance(spec.get("command"), list) and spec["command"][0] == "quartier"
    ]
    assert len(commands) >= 8  # migrate, 3 APIs, 3 workers, beat
    for command in commands:
        args = command[1:]
        sub = main.get_command(click.Context(main), args[0])
        assert sub is not None, f"quartier has no command {args[0]!r}"
        with click.Context(main) as parent:
            sub.make_context(args[0], list(args[1:]), parent=parent)  # raises on bad options


def test_the_apis_are_served_as_quartier_api_serves_them(compose: dict[str, Any]) -> None:
    """``quartier api`` runs gunicorn with the worker class that writes gunicorn's own
    errors as problem+json (shared/gunicorn_worker.py); a gunicorn command line of its own
    would lose it."""
    for service in SERVICES:
        assert compose["services"][f"{service}-api"]["command"][:3] == ["quartier", "api", service]


def test_compose_sets_only_variables_the_code_reads(compose: dict[str, Any]) -> None:
    known = _variables_the_code_reads() | {"FLOWER_BASIC_AUTH"}
    for name, spec in compose["services"].items():
        if spec.get("image", "").startswith("quartier"):
            unknown = set(spec.get("environment", {})) - known
            assert not unknown, f"{name} sets variables no code reads: {unknown}"


def test_every_service_has_api_and_worker_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in SERVICES:
        assert services[f"{service}-api"]["healthcheck"]["test"]
        assert services[f"{service}-worker"]["healthcheck"]["test"]
    assert services["beat"]["command"][:2] == ["quartier", "beat"]
    assert "flower" in services["flower"]["command"]


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env={
            "SECRET_KEY": "x" * 40,
            "POSTGRES_PASSWORD": "pw",
            "FLOWER_BASIC_AUTH": "a:b",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
