"""Who measured each row (user@host) and with which edgelat, beside the TVM and agent versions and the time rows
already keep: measurements that travel between workspaces and people keep where they came from.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    for table in ("measurements", "network_measurements"):
        op.add_column(table, sa.Column("measured_by", sa.Text))
        op.add_column(table, sa.Column("edgelat_version", sa.Text))
