"""imports: the status checking (a large file's rows checked by a worker)

Revision ID: 5c0d7e21a9f4
Revises: 3b36abaa67b4
Create Date: 2026-11-29 21:40:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5c0d7e21a9f4"
down_revision: str | Sequence[str] | None = "3b36abaa67b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('previewed', 'queued', 'running', 'committed', 'failed')"
AFTER = "status IN ('checking', 'previewed', 'queued', 'running', 'committed', 'failed')"


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_constraint(op.f("ck_imports_status"), "imports", type_="check")
    op.create_check_constraint(op.f("ck_imports_status"), "imports", AFTER)


def downgrade() -> None:
    """Downgrade schema: imports still being checked are deleted (upload the file again)."""
    op.execute("DELETE FROM imports WHERE status = 'checking'")
    op.drop_constraint(op.f("ck_imports_status"), "imports", type_="check")
    op.create_check_constraint(op.f("ck_imports_status"), "imports", BEFORE)
