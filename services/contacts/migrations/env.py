from services.contacts.models import Base
from shared.migrations import run_migrations

run_migrations(Base.metadata)
