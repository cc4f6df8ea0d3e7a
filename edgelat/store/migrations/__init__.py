"""Alembic's home for the store's schema: ``env.py`` and one revision per change under ``versions/``.

A new change to the schema is a new revision (``down_revision`` = the current head), written once for both
engines with :mod:`alembic.op`; a released revision is never edited.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["now_default"]


def now_default() -> sa.TextClause:
    """The column default of a row's creation time: ISO 8601 text, UTC, milliseconds, on either engine
    (the same text :func:`edgelat.store.utc_now` writes)."""
    if op.get_bind().dialect.name == "postgresql":
        return sa.text("""(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))""")
    return sa.text("(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")
