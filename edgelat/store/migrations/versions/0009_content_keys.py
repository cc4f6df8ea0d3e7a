"""Keys that travel: a campaign and a network measurement keep one ``uid`` in every store they are copied to
(``edgelat data push/pull``), so copying again adds only what is new. Rows made before get one now.

Revision ID: 0009
Revises: 0008
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    bind = op.get_bind()
    for table in ("campaigns", "network_measurements"):
        op.add_column(table, sa.Column("uid", sa.Text))
        t = sa.table(table, sa.column("id"), sa.column("uid"))
        for (row_id,) in bind.execute(sa.select(t.c.id)).all():
            bind.execute(t.update().where(t.c.id == row_id).values(uid=uuid.uuid4().hex))
        op.create_index(f"{table}_uid", table, ["uid"], unique=True)
