"""Fleets (edgelat.profiler.fleet): the member of a device group that measured a row, why its rows are flagged
(sentinels off the group's), and the sentinel kernels every member times before and after.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from edgelat.store.migrations import now_default

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("measurements", sa.Column("member", sa.Text))
    op.add_column("measurements", sa.Column("flagged", sa.Text))
    op.execute("UPDATE measurements SET member = device")
    op.create_table(
        "sentinels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("member", sa.Text, nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("config_id", sa.Text, nullable=False),
        sa.Column("median_ms", sa.Float),
        sa.Column("measured_at", sa.Text, nullable=False, server_default=now_default()),
        sa.UniqueConstraint("campaign_id", "member", "phase", "config_id"),
    )
