"""Contacts' commands for the ``quartier`` command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from shared.auth import STAFF_ROLES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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


@click.group()
def contacts() -> None:
    """The register of organisations, people and premises."""


DEMO_ORGANISATIONS = (
    {
        "kind": "business",
        "name": "Bäckerei Müller",
        "legal_form": "e.K.",
        "sector": "Lebensmittelhandwerk",
        "street": "Güstrower Straße",
        "house_number": "12",
        "postcode": "18109",
        "city": "Rostock",
        "district": "Groß Klein",
        "status": "active",
        "needs": ["nachfolge", "fachkraefte"],
        "tags": ["Handwerk"],
    },
    {
        "kind": "business",
        "name": "Friseursalon Jördis Weiß",
        "sector": "Friseurhandwerk",
        "street": "Schiffbauerring",
        "house_number": "3a",
        "postcode": "18109",
        "city": "Rostock",
        "district": "Groß Klein",
        "needs": ["online-marketing"],
    },
    {
        "kind": "business",
        "name": "Kfz-Werkstatt Öztürk GmbH",
        "sector": "Kraftfahrzeuge",
        "street": "Schmarler Damm",
        "house_number": "5",
        "postcode": "18106",
        "city": "Rostock",
        "district": "Schmarl",
        "needs": ["digitalisierung"],
    },
    {
        "kind": "housing_company",
        "name": "Wohnungsgesellschaft Nordwest",
        "legal_form": "GmbH",
        "street": "Warnowallee",
        "house_number": "20",
        "postcode": "18107",
        "city": "Rostock",
        "district": "Lütten Klein",
    },
)


@contacts.command("seed-demo")
def seed_demo() -> None:
    """Add a few demo organisations, a person and vacant premises in Groß Klein."""
    from shared.db import get_database

    from .app import create_app

    app = create_app()
    database = get_database(app)
    try:
        with app.app_context(), database.session() as session:
            message = _seed(session)
    finally:
        database.dispose()
    click.echo(message)


@contacts.command("reindex")
def reindex() -> None:
    """Fold the text of every organisation and person again, for search and duplicates.
    Once after an upgrade that changes the folding; safe to run again."""
    from shared.db import get_database

    from .app import create_app
    from .services.reindex import reindex as refold

    app = create_app()
    database = get_database(app)
    try:
        with app.app_context(), database.session() as session:
            orgs, persons = refold(session)
    finally:
        database.dispose()
    click.echo(f"Folded again: {orgs} organisations, {persons} people.")


def _seed(session: Session) -> str:
    from sqlalchemy import select

    from .models import Organisation
    from .services import organisations, people, premises

    actor = "seed-demo"
    first = DEMO_ORGANISATIONS[0]["name"]
    if session.scalar(select(Organisation.id).where(Organisation.name == first)):
        return "The demo records are there already."
    created = [
        organisations.create_organisation(session, data, actor=actor) for data in DEMO_ORGANISATIONS
    ]
    people.create_person(
        session,
        {
            "first_name": "Klaus",
            "last_name": "Müller",
            "roles": [{"organisation_id": created[0].id, "role": "owner"}],
        },
        actor=actor,
    )
    premises.create_premises(
        session,
        {
            "street": "Gerüstbauerring",
            "house_number": "28",
            "postcode": "18109",
            "city": "Rostock",
            "district": "Groß Klein",
            "floor_area": 85,
            "use": "retail",
            "owner_id": created[3].id,
            "status": "vacant",
        },
        actor=actor,
    )
    return f"Added {len(created)} organisations, 1 person and 1 vacant premises."


COMMANDS = (users, contacts)
