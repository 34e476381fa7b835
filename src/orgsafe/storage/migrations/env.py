"""Alembic environment: runs on the connection handed over by orgsafe.storage."""

from alembic import context
from sqlalchemy import text

from orgsafe.storage.migrate import MIGRATION_LOCK

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
with context.begin_transaction():
    context.run_migrations()
