"""The process running a campaign and until when its lease holds (edgelat.profiler.lease).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("holder", sa.Text))
    op.add_column("campaigns", sa.Column("lease_until", sa.Float))
