"""Settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import ConfigurationError, Settings, service_database_url


def test_development_defaults_generate_and_keep_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("SECRET_KEY", "DATABASE_URL", "CONTACTS_DATABASE_URL", "QUARTIER_ENV"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("QUARTIER_VAR_DIR", str(tmp_path))
    first = Settings.from_env("contacts")
    second = Settings.from_env("visits")
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert first.database_url.endswith("/quartier_contacts")
    assert second.database_url.endswith("/quartier_visits")


def test_production_refuses_to_start_without_secret_or_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QUARTIER_ENV", "production")
    monkeypatch.setenv("QUARTIER_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/quartier_contacts")
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        Settings.from_env("contacts")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("CONTACTS_DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        Settings.from_env("contacts")
    monkeypatch.setenv("CONTACTS_DATABASE_URL", "postgres://u:p@db:5432/contacts")
    settings = Settings.from_env("contacts")
    assert settings.is_production
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/contacts"
    assert not (tmp_path / "secret_key").exists()


def test_service_database_url_keeps_the_server() -> None:
    assert (
        service_database_url("postgresql://u:p@db:5433/anything?sslmode=require", "visits")
        == "postgresql+psycopg://u:p@db:5433/quartier_visits?sslmode=require"
    )
