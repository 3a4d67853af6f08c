"""Alembic environment: connects with DATABASE_URL through psycopg 3, one migration at a time.

* A session-level advisory lock makes concurrent runs (two hosts starting at once) wait for each
  other instead of racing.
* ``lock_timeout`` makes a migration that cannot get its table lock fail fast instead of queueing
  behind a long transaction while blocking every query behind it.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.config import fileConfig

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

MIGRATION_LOCK_ID = 0x7475_746F  # "tuto"

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("alembic.env")


def _database_url() -> str:
    url = str(config.attributes.get("database_url") or os.environ.get("DATABASE_URL", "")).strip()
    if not url:
        sys.exit("DATABASE_URL: is required but not set")
    scheme, sep, rest = url.partition("://")
    # libpq does not know SQLAlchemy's driver suffix (postgresql+psycopg://).
    return f"{scheme.split('+')[0]}{sep}{rest}"


def run_offline() -> None:
    """Print the SQL instead of running it (``--sql``)."""
    context.configure(url="postgresql+psycopg://", literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations against DATABASE_URL."""
    url = _database_url()
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(url, connect_timeout=10, application_name="tutormax-migrate"),
        poolclass=pool.NullPool,
    )
    lock_timeout = os.environ.get("MIGRATION_LOCK_TIMEOUT", "10s")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"SELECT set_config('lock_timeout', '{lock_timeout.replace(chr(39), '')}', false)")
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
            connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
