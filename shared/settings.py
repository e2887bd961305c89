"""Settings from environment variables, with development defaults that point at the
embedded engines started by ``quartier run``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from environs import Env
from sqlalchemy.engine import make_url

SERVICES: tuple[str, ...] = ("contacts", "visits", "newsletter")
DEFAULT_PORTS: dict[str, int] = {"contacts": 5001, "visits": 5002, "newsletter": 5003}

# Ports of the embedded engines; chosen away from the standard ones so that a system
# PostgreSQL or Redis on the same machine does not collide with them.
EMBEDDED_PG_PORT = 54329
EMBEDDED_REDIS_PORT = 63790
EMBEDDED_SMTP_PORT = 2525

DEFAULT_DATABASE_URL = f"postgresql+psycopg://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/quartier"
DEFAULT_REDIS_URL = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
DEFAULT_SMTP_URL = f"smtp://127.0.0.1:{EMBEDDED_SMTP_PORT}"


class ConfigurationError(RuntimeError):
    """The environment does not describe a runnable configuration."""


def normalise_database_url(url: str) -> str:
    """Accept the ``postgres://`` and ``postgresql://`` forms and use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def service_database_url(server_url: str, service: str, prefix: str = "quartier") -> str:
    """The URL of a service's own database on the server that ``server_url`` names."""
    url = make_url(normalise_database_url(server_url))
    return url.set(database=f"{prefix}_{service}").render_as_string(hide_password=False)


def load_or_create_dev_secret(var_dir: Path) -> str:
    """The development secret: generated once, kept under var/ (never in the repository)."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once agree on one secret.
    try:
        with path.open("x") as fh:
            fh.write(value)
        path.chmod(0o600)
    except FileExistsError:
        return path.read_text().strip()
    return value


@dataclass(frozen=True)
class CompanyDetails:
    """The sender's legal details (Impressum), shown in every campaign mail."""

    name: str = (
        "Rostock Business – Gesellschaft für Wirtschafts- und Technologieförderung Rostock mbH"
    )
    address: str = "Schweriner Straße 10/11, 18069 Rostock"
    register: str = "Amtsgericht Rostock, HRB 1633"
    managing_directors: str = "Christian Weiß"
    email: str = "info@rostock-business.de"
    phone: str = "+49 381 377 19 0"


@dataclass(frozen=True)
class Settings:
    service: str
    env: str = "development"
    secret_key: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    smtp_url: str = DEFAULT_SMTP_URL
    var_dir: Path = Path("var")
    mail_from: str = "Quartier CRM <noreply@quartier.localhost>"
    token_ttl_seconds: int = 8 * 3600
    max_content_length: int = 20 * 1024 * 1024
    log_level: str = "INFO"
    log_json: bool = True
    service_urls: dict[str, str] = field(default_factory=dict)
    public_urls: dict[str, str] = field(default_factory=dict)
    ratelimit_public: str = "30 per minute"
    ratelimit_enabled: bool = True
    company: CompanyDetails = field(default_factory=CompanyDetails)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def url_of(self, service: str) -> str:
        return self.service_urls[service]

    def public_url_of(self, service: str) -> str:
        return self.public_urls.get(service) or self.service_urls[service]

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, service: str) -> Settings:
        return cls._read(Env(expand_vars=True), service)

    @classmethod
    def _read(cls, env: Env, service: str) -> Settings:
        mode = env.str("QUARTIER_ENV", "development")
        if mode not in ("development", "production", "test"):
            raise ConfigurationError(
                f"QUARTIER_ENV must be development, production or test, not {mode!r}"
            )
        var_dir = Path(env.str("QUARTIER_VAR_DIR", "var")).resolve()
        prefix = service.upper()

        secret = env.str("SECRET_KEY", "")
        database_url = env.str(f"{prefix}_DATABASE_URL", "") or env.str("DATABASE_URL", "")
        if mode == "production":
            if len(secret) < 32:
                raise ConfigurationError("production needs SECRET_KEY (at least 32 characters)")
            if not database_url:
                raise ConfigurationError(f"production needs {prefix}_DATABASE_URL or DATABASE_URL")
        if not secret:
            secret = load_or_create_dev_secret(var_dir)
        if not database_url:
            database_url = service_database_url(DEFAULT_DATABASE_URL, service)

        service_urls = {
            name: env.str(f"{name.upper()}_URL", f"http://127.0.0.1:{port}")
            for name, port in DEFAULT_PORTS.items()
        }
        public_urls = {
            name: env.str(f"{name.upper()}_PUBLIC_URL", service_urls[name])
            for name in DEFAULT_PORTS
        }
        company = CompanyDetails(
            name=env.str("COMPANY_NAME", CompanyDetails.name),
            address=env.str("COMPANY_ADDRESS", CompanyDetails.address),
            register=env.str("COMPANY_REGISTER", CompanyDetails.register),
            managing_directors=env.str(
                "COMPANY_MANAGING_DIRECTORS", CompanyDetails.managing_directors
            ),
            email=env.str("COMPANY_EMAIL", CompanyDetails.email),
            phone=env.str("COMPANY_PHONE", CompanyDetails.phone),
        )
        return cls(
            service=service,
            env=mode,
            secret_key=secret,
            database_url=normalise_database_url(database_url),
            redis_url=env.str("REDIS_URL", DEFAULT_REDIS_URL),
            smtp_url=env.str("SMTP_URL", DEFAULT_SMTP_URL),
            var_dir=var_dir,
            mail_from=env.str("MAIL_FROM", cls.mail_from),
            token_ttl_seconds=env.int("TOKEN_TTL_SECONDS", 8 * 3600),
            max_content_length=env.int("MAX_CONTENT_LENGTH", 20 * 1024 * 1024),
            log_level=env.str("LOG_LEVEL", "INFO"),
            log_json=env.bool("LOG_JSON", True),
            service_urls=service_urls,
            public_urls=public_urls,
            ratelimit_public=env.str("RATELIMIT_PUBLIC", "30 per minute"),
            ratelimit_enabled=env.bool("RATELIMIT_ENABLED", True),
            company=company,
        )
