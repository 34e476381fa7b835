"""Schema migrations with Alembic, run as the owner role.

The app role is made (if missing) before the migrations, since grants in them name
it. Both run under one advisory lock, so that several `serve` processes starting
at once make the role once and apply each revision exactly once: PostgreSQL
refuses two concurrent changes of one role ("tuple concurrently updated").
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine, pool

from orgsafe.errors import DatabaseError
from orgsafe.logs import get_logger
from orgsafe.storage.database import DatabaseTarget, connect, translate

MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary constant: the advisory lock that serialises role set-up and
# migrations (migrations/env.py takes it too).
MIGRATION_LOCK = 7_303_011
log = get_logger("orgsafe.storage")


def alembic_config(target: DatabaseTarget) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["app_role"] = target.app_role
    return config


def upgrade(
    target: DatabaseTarget,
    app_password: str | None = None,
    statement_timeout_ms: int = 5000,
) -> str:
    """Bring the schema to the newest revision; returns that revision."""
    ensure_app_role(target, app_password, statement_timeout_ms)
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: connect(target.owner_url),
        poolclass=pool.NullPool,
    )
    config = alembic_config(target)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except psycopg.Error as exc:
        translate(exc, "schema migration failed")
    finally:
        engine.dispose()
    revision = current_revision(target)
    log.info("schema_upgraded", revision=revision)
    return revision


def current_revision(target: DatabaseTarget) -> str:
    with connect(target.owner_url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
    return str(row[0]) if row else "none"


def ensure_app_role(
    target: DatabaseTarget, password: str | None, statement_timeout_ms: int = 5000
) -> None:
    with connect(target.admin_url) as conn:
        # One transaction under the lock: the copy that waited sees the role made.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (target.app_role,)
        ).fetchone()
        try:
            if not exists:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS").format(
                        sql.Identifier(target.app_role)
                    )
                )
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} IN DATABASE {} SET statement_timeout = {}"
                ).format(
                    sql.Identifier(target.app_role),
                    sql.Identifier(str(conn.info.dbname)),
                    sql.Literal(f"{int(statement_timeout_ms)}ms"),
                )
            )
            if password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(target.app_role), sql.Literal(password)
                    )
                )
            conn.commit()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DatabaseError(
                f"cannot create or alter role {target.app_role}: the role of "
                "DATABASE_URL lacks CREATEROLE; create it by hand "
                f"(CREATE ROLE {target.app_role} LOGIN) or grant CREATEROLE",
                exc.sqlstate,
            ) from exc
        except psycopg.Error as exc:
            translate(exc, f"cannot set up role {target.app_role}")
