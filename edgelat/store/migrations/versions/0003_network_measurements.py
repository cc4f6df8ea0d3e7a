"""Whole networks measured end to end.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from edgelat.store.migrations import now_default

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "network_measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device", sa.Text, sa.ForeignKey("devices.name", ondelete="CASCADE"), nullable=False),
        sa.Column("recipe", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("network_hash", sa.Text, nullable=False),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("median_ms", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("measured_at", sa.Text, nullable=False, server_default=now_default()),
    )
    op.create_index("network_measurements_device", "network_measurements", ["device", "recipe", "network_hash"])
