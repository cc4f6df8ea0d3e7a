"""How a campaign times its kernels (edgelat.profiler.campaign.ProfileConfig.caches): NULL is its recipe's way,
"flushed" a tuned recipe's far way (edgelat.profiler.recipes.Recipe.far_caches), so a resume times them alike.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("caches", sa.Text))
