"""Each service's migrations build exactly the schema its models describe."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from shared.migrations import alembic_config
from shared.settings import SERVICES
from shared.testing import Engines


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models(engines: Engines, service: str) -> None:
    models = importlib.import_module(f"services.{service}.models")
    engine = create_engine(engines.databases[service])
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"{service}: models and migrations differ; add a migration:\n{diff}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_services_migrations_have_one_head(service: str) -> None:
    """``upgrade head`` (shared.migrations.upgrade) needs exactly one."""
    script = ScriptDirectory.from_config(alembic_config(service, "postgresql://unused/db"))
    assert len(script.get_heads()) == 1, script.get_heads()
