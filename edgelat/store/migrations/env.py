"""Alembic's entry point: migrations run on the connection :func:`edgelat.store.open_store` hands over, inside
the transaction it opened (one transaction for all revisions, so an upgrade lands whole or not at all)."""

from alembic import context

context.configure(connection=context.config.attributes["connection"], target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
