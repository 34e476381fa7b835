"""A real PostgreSQL for the tests.

With DATABASE_URL set (PostgreSQL 15+, a role that may create databases and roles),
the tests make their own databases on that server and drop them afterwards.
Without it, they start the embedded server in a temporary folder.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orgsafe.config import Settings
from orgsafe.storage import DatabaseTarget, connect, upgrade
from orgsafe.storage.database import with_user
from orgsafe.storage.embedded import start_embedded

APP_PASSWORD = "app-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A superuser connection to the test server's maintenance database."""
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        try:
            with connect(external) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:  # an unreachable DATABASE_URL aborts the run
            pytest.exit(f"DATABASE_URL is set but unreachable: {exc}", returncode=3)
        return external
    data_dir: Path = tmp_path_factory.mktemp("embedded")
    target = start_embedded(Settings(data_dir=data_dir))
    return with_user(target.admin_url, "postgres", None, "postgres")


def create_database(server: str, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server: str, name: str) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


@pytest.fixture(scope="session")
def target(server_url: str) -> Iterator[DatabaseTarget]:
    """A migrated orgsafe database; the service connects as the app role."""
    name = create_database(server_url, "orgsafe_test")
    admin = with_user(server_url, _user(server_url), _password(server_url), name)
    app_role = f"orgsafe_app_{secrets.token_hex(3)}"
    made = DatabaseTarget(
        admin_url=admin,
        owner_url=admin,
        app_url=with_user(admin, app_role, APP_PASSWORD),
        app_role=app_role,
        embedded=False,
    )
    upgrade(made, APP_PASSWORD)
    yield made
    drop_database(server_url, name)
    with connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app_role)))


@pytest.fixture
def scratch_url(server_url: str) -> Iterator[str]:
    """An empty database of its own, as a superuser, for one test."""
    name = create_database(server_url, "orgsafe_scratch")
    yield with_user(server_url, _user(server_url), _password(server_url), name)
    drop_database(server_url, name)


@pytest.fixture
def admin_conn(
    target: DatabaseTarget,
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with connect(target.admin_url, autocommit=True) as conn:
        yield conn


def _user(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url).get("user") or "postgres")


def _password(url: str) -> str | None:
    value = psycopg.conninfo.conninfo_to_dict(url).get("password")
    return str(value) if value else None


def wait_for_lock_wait(url: str, statement_start: str, timeout: float = 10.0) -> None:
    """Returns once a statement starting so waits on a lock; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    with connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND starts_with(query, %s)",
                (statement_start,),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"no {statement_start!r} statement waited on a lock")
