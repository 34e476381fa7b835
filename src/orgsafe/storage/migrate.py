"""Schema migrations with Alembic, run as the owner role.

The app role is made (if missing) before the migrations, since grants in them name
it. Each of the two runs in one transaction holding the same advisory lock, so
that several `serve` processes starting at once make the role once and apply each
revision exactly once: PostgreSQL refuses two concurrent changes of one role
("tuple concurrently updated").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine, exc, pool

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
    except psycopg.Error as error:
        translate(error, "schema migration failed")
    except exc.DBAPIError as error:
        # SQLAlchemy wraps what psycopg raised on its connection (waiting for
        # the lock past a lock_timeout, a dropped connection).
        if isinstance(error.orig, psycopg.Error):
            translate(error.orig, "schema migration failed")
        raise
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
    # Roles belong to the whole server but advisory locks to one database: copies
    # serving different databases under one role name are not lined up here.
    with connect(target.admin_url) as conn:
        timeout = f"{int(statement_timeout_ms)}ms"
        set_timeout = sql.SQL(
            "ALTER ROLE {} IN DATABASE {} SET statement_timeout = {}"
        ).format(
            sql.Identifier(target.app_role),
            sql.Identifier(str(conn.info.dbname)),
            sql.Literal(timeout),
        )
        try:
            # One transaction under the lock: a copy that waited sees the role made.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (target.app_role,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS").format(
                        sql.Identifier(target.app_role)
                    )
                )
            if not has_timeout(conn, target.app_role, timeout):
                conn.execute(set_timeout)
            if password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(target.app_role), sql.Literal(password)
                    )
                )
            conn.commit()
        except psycopg.errors.InsufficientPrivilege as error:
            role = sql.Identifier(target.app_role).as_string(conn)
            by_hand = (
                # Setting the password needs CREATEROLE whatever was done by hand.
                "grant it: with ORGSAFE_APP_PASSWORD set, every upgrade sets the "
                "role's password"
                if password
                else "grant it, or as a role that has it run "
                f"CREATE ROLE {role} LOGIN and {set_timeout.as_string(conn)}"
            )
            raise DatabaseError(
                f"cannot create or alter role {target.app_role}: the role of "
                f"DATABASE_URL lacks CREATEROLE; {by_hand}",
                error.sqlstate,
            ) from error
        except psycopg.Error as error:
            translate(error, f"cannot set up role {target.app_role}")


def has_timeout(conn: psycopg.Connection[Any], role: str, timeout: str) -> bool:
    """Whether the role already has this statement_timeout in this database."""
    row = conn.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s"
        " JOIN pg_roles r ON r.oid = s.setrole"
        " JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE r.rolname = %s AND d.datname = current_database()",
        (role,),
    ).fetchone()
    return row is not None and f"statement_timeout={timeout}" in (row[0] or [])
