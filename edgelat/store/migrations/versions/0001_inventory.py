"""Inventory: devices and their probes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from edgelat.store.migrations import now_default

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("preset", sa.Text, nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("port", sa.Integer, nullable=False, server_default="22"),
        sa.Column("user", sa.Text),
        sa.Column("key_file", sa.Text),
        sa.Column("jump", sa.Text),
        sa.Column("python", sa.Text, nullable=False, server_default="python3"),
        sa.Column("threads", sa.Integer),
        sa.Column("created_at", sa.Text, nullable=False, server_default=now_default()),
    )
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device", sa.Text, sa.ForeignKey("devices.name", ondelete="CASCADE"), nullable=False),
        sa.Column("taken_at", sa.Text, nullable=False, server_default=now_default()),
        sa.Column("agent_version", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
    )
