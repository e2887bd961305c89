"""The ``quartier`` command line."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from shared.settings import DEFAULT_PORTS, EMBEDDED_SMTP_PORT, SERVICES, Settings


@click.group()
def main() -> None:
    """Quartier CRM: contacts, outreach visits and trainings, newsletter."""


@main.command()
@click.option("--workers/--no-workers", default=True, help="Start the Celery workers and beat.")
def run(workers: bool) -> None:
    """Start everything: engines (unless DATABASE_URL / REDIS_URL / SMTP_URL are set),
    migrations, the three APIs, their workers, the scheduler and the mail sink."""
    from shared.runner import run_system

    sys.exit(run_system(with_workers=workers))


@main.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICES))
def migrate(services: tuple[str, ...]) -> None:
    """Bring the databases of SERVICES (default: all) to the newest schema."""
    from shared.migrations import upgrade

    for name in services or SERVICES:
        settings = Settings.from_env(name)
        upgrade(name, settings.database_url)
        click.echo(f"{name}: migrated")


# gunicorn's default access line without the query string and the referrer (which holds the
# query string of the page the request came from): a query may hold personal data, the
# address of a request about a person's data (GET /privacy/export?email=…), a search for a
# name, a newsletter link's token.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--port", type=int, default=None)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", "processes", type=int, default=2, show_default=True)
def api(service: str, port: int | None, host: str, processes: int) -> None:
    """Serve one service's API under gunicorn (its own errors as problem+json too)."""
    from shared.gunicorn_worker import WORKER_CLASS

    port = port or int(os.environ.get(f"{service.upper()}_PORT", DEFAULT_PORTS[service]))
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(processes),
            "--worker-class",
            WORKER_CLASS,
            "--threads",
            "4",
            "--timeout",
            "60",
            # No control socket (gunicornc): one per user's home by default, which the three
            # APIs of one machine would share, and nothing here uses it.
            "--no-control-socket",
            "--access-logfile",
            "-",
            "--access-logformat",
            ACCESS_LOG_FORMAT,
            "--name",
            f"quartier-{service}",
            f"services.{service}.app:create_app()",
        ],
    )


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(service: str, concurrency: int, loglevel: str) -> None:
    """Run one service's Celery worker on its queue."""
    module = importlib.import_module(f"services.{service}.worker")
    module.celery_app.worker_main(
        ["worker", "-Q", service, "-n", f"{service}@%h", "-c", str(concurrency), "-l", loglevel]
    )


@main.command()
@click.option("--schedule", default=None, help="Where beat keeps its state (default: var/).")
@click.option("--loglevel", default="INFO", show_default=True)
def beat(schedule: str | None, loglevel: str) -> None:
    """Run the scheduler: periodic tasks of every service and the outbox relays."""
    from shared.celery_app import create_beat_app

    settings = Settings.from_env("contacts")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    path = schedule or str(settings.var_dir / "celerybeat-schedule")
    create_beat_app(settings.redis_url).start(["beat", "-s", path, "-l", loglevel])


@main.command("smtp-sink")
@click.option("--port", type=int, default=EMBEDDED_SMTP_PORT, show_default=True)
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None)
def smtp_sink(port: int, folder: Path | None) -> None:
    """Run a local SMTP server that keeps every mail as a file (default: var/mail/)."""
    import time

    from shared.smtp_sink import start_sink

    folder = folder or Settings.from_env("contacts").var_dir / "mail"
    controller, _handler = start_sink(port=port, folder=folder)
    click.echo(f"SMTP sink on 127.0.0.1:{port}, keeping mail in {folder}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


@main.group()
def mail() -> None:
    """The mails kept by the local SMTP sink."""


def _mail_folder() -> Path:
    return Settings.from_env("contacts").var_dir / "mail"


@mail.command("list")
@click.option("--to", "recipient", default=None, help="Only mails to this address.")
def mail_list(recipient: str | None) -> None:
    """List kept mails, oldest first."""
    from shared.smtp_sink import read_folder

    folder = _mail_folder()
    mails = read_folder(folder) if folder.exists() else []
    for item in mails:
        msg = item.message()
        to = ", ".join(item.recipients)
        if recipient and recipient.lower() not in to.lower():
            continue
        click.echo(f"{item.id}  {item.received_at:%Y-%m-%d %H:%M:%S}  {to}  {msg['Subject']}")
    if not mails:
        click.echo(f"No mail in {folder}.")


@mail.command("show")
@click.argument("mail_id")
@click.option("--raw", is_flag=True, help="The message as it was sent.")
@click.option("--html", is_flag=True, help="The HTML part instead of the text part.")
def mail_show(mail_id: str, raw: bool, html: bool) -> None:
    """Show one kept mail (an id from ``quartier mail list``, or 'last')."""
    from shared.smtp_sink import read_folder

    mails = read_folder(_mail_folder()) if _mail_folder().exists() else []
    found = mails[-1:] if mail_id == "last" else [m for m in mails if m.id.startswith(mail_id)]
    if not found:
        raise click.ClickException(f"No mail {mail_id!r}.")
    item = found[0]
    if raw:
        click.echo(item.raw.decode("utf-8", errors="replace"))
        return
    msg = item.message()
    for header in ("From", "To", "Subject", "Date", "List-Unsubscribe"):
        if msg[header]:
            click.echo(f"{header}: {msg[header]}")
    body = msg.get_body(preferencelist=("html",) if html else ("plain", "html"))
    click.echo("")
    click.echo(body.get_content() if body is not None else "(no body)")


def _add_service_commands() -> None:
    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{name}.cli":
                raise
            continue
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_add_service_commands()
