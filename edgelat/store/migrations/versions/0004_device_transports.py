"""A device names its transport kind and keeps that transport's settings as JSON (SSH's were columns).

Revision ID: 0004
Revises: 0003
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_SSH_COLUMNS = ("host", "port", "user", "key_file", "jump")


def upgrade() -> None:
    op.add_column("devices", sa.Column("transport", sa.Text, nullable=False, server_default="local"))
    op.add_column("devices", sa.Column("settings", sa.Text, nullable=False, server_default="{}"))
    bind = op.get_bind()
    devices = sa.table("devices", *(sa.column(c) for c in ("name", "preset", "transport", "settings", *_SSH_COLUMNS)))
    for row in bind.execute(sa.select(devices)).mappings().all():
        transport = "none" if row["preset"] == "adapted" else "local" if row["host"] is None else "ssh"
        settings = {c: row[c] for c in _SSH_COLUMNS if row[c] is not None} if transport == "ssh" else {}
        bind.execute(
            devices.update().where(devices.c.name == row["name"]).values(transport=transport, settings=json.dumps(settings))
        )
    for column in _SSH_COLUMNS:  # plain ALTER TABLE: SQLite (3.35+) and PostgreSQL drop a column the same way
        op.drop_column("devices", column)
