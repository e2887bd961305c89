"""The ``quartier`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from services.contacts.models import User
from shared.cli import main
from shared.db import Database
from shared.smtp_sink import start_sink
from shared.testing import Engines, unique_email


def test_users_create_with_generated_password(cli_env: dict[str, str], engines: Engines) -> None:
    email = unique_email("coordinator")
    result = CliRunner().invoke(
        main,
        ["users", "create", "--email", email, "--role", "coordinator", "--generate"],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    assert "Password: " in result.output
    database = Database(engines.databases["contacts"])
    with database.session() as session:
        user = session.scalar(select(User).where(User.email == email))
    database.dispose()
    assert user is not None and user.role == "coordinator"

    again = CliRunner().invoke(
        main, ["users", "create", "--email", email, "--role", "viewer", "--generate"], env=cli_env
    )
    assert again.exit_code != 0
    assert "exists" in again.output


def test_mail_list_and_show_read_the_sink_folder(cli_env: dict[str, str], tmp_path: Path) -> None:
    from shared.mail import Mailer, SmtpConfig, build_message

    controller, _ = start_sink(folder=tmp_path / "mail")
    try:
        with Mailer(SmtpConfig(port=controller.port)) as mailer:
            mailer.send(
                build_message(
                    sender="buero@example.org",
                    to="inhaberin@example.org",
                    subject="Bestätigung Ihrer Anmeldung",
                    text="Vielen Dank für Ihre Anmeldung.",
                    html="<p>Vielen Dank</p>",
                )
            )
    finally:
        controller.stop()
    listed = CliRunner().invoke(main, ["mail", "list"], env=cli_env)
    assert "inhaberin@example.org" in listed.output
    assert "Bestätigung Ihrer Anmeldung" in listed.output
    shown = CliRunner().invoke(main, ["mail", "show", "last"], env=cli_env)
    assert "Vielen Dank für Ihre Anmeldung." in shown.output


def test_the_embedded_postgresql_loads_without_warnings_where_no_runtime_folder_is_set() -> None:
    """``make run`` on a server or in a container (no ``XDG_RUNTIME_DIR``): pgserver's
    import asked platformdirs for a runtime folder, and its warning was the first thing a
    new user read."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "from shared.embedded import _pg_bin; _pg_bin('initdb')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
