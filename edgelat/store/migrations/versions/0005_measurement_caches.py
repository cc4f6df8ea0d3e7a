"""How a kernel was timed: "warm" or "flushed" caches (edgelat.profiler.recipes.Recipe.caches).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("measurements", sa.Column("caches", sa.Text, nullable=False, server_default="warm"))
