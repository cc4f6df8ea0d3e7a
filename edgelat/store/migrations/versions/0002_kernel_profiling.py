"""Kernel profiling: campaigns, kernel configurations, measurements.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from edgelat.store.migrations import now_default

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device", sa.Text, sa.ForeignKey("devices.name", ondelete="CASCADE"), nullable=False),
        sa.Column("recipe", sa.Text, nullable=False),
        sa.Column("ops", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("tvm_version", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("created_at", sa.Text, nullable=False, server_default=now_default()),
        sa.Column("updated_at", sa.Text),
    )
    op.create_table(
        "kernel_configs",
        sa.Column("config_id", sa.Text, primary_key=True),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
    )
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("config_id", sa.Text, sa.ForeignKey("kernel_configs.config_id"), nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("recipe", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        *(sa.Column(c, sa.Float) for c in ("median_ms", "mean_ms", "std_ms", "min_ms", "max_ms")),
        sa.Column("repeats", sa.Integer),
        sa.Column("number", sa.Integer),
        sa.Column("cv", sa.Float),
        sa.Column("unstable", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("threads", sa.Integer),
        sa.Column("target", sa.Text),
        sa.Column("tvm_version", sa.Text),
        sa.Column("agent_version", sa.Text),
        sa.Column("build_s", sa.Float),
        sa.Column("tune_s", sa.Float),
        sa.Column("state_before", sa.Text),
        sa.Column("state_after", sa.Text),
        sa.Column("measured_at", sa.Text, nullable=False, server_default=now_default()),
        sa.UniqueConstraint("campaign_id", "config_id"),
    )
    op.create_index("measurements_device_op", "measurements", ["device", "op", "recipe"])
