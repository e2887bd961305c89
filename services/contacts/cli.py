"""Contacts' commands for the ``quartier`` command line."""

from __future__ import annotations

import click

from shared.auth import STAFF_ROLES


@click.group()
def users() -> None:
    """Staff users."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(STAFF_ROLES), required=True)
@click.option("--name", default="")
@click.option(
    "--password",
    default=None,
    help="Omit to be asked; with --generate a random one is printed once.",
)
@click.option("--generate", is_flag=True, help="Generate a password and print it.")
def create(email: str, role: str, name: str, password: str | None, generate: bool) -> None:
    """Create a staff user."""
    from shared.db import get_database
    from shared.errors import DomainError

    from . import services
    from .app import create_app

    if generate:
        password = services.generate_password()
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    app = create_app()
    with get_database(app).session() as session:
        try:
            user = services.create_user(
                session, email=email, role=role, password=password or "", name=name
            )
        except DomainError as exc:
            raise click.ClickException(f"{exc.detail} {getattr(exc, 'extensions', '')}") from exc
    click.echo(f"Created {user.role} {user.email}")
    if generate:
        click.echo(f"Password: {password}")


COMMANDS = (users,)
