"""Connection targets and the one boundary where psycopg errors become ours.

Three roles take part:
- admin: provisions roles and the database (the embedded server's superuser, or the
  DATABASE_URL role), and runs maintenance that must see every org's rows;
- owner: owns the schema and runs migrations;
- app: what the service connects as. It owns nothing and has no BYPASSRLS, so
  row-level security applies to every query it makes.
With DATABASE_URL, admin and owner are the same role: the one in the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import psycopg
from psycopg import conninfo

from orgsafe.config import Settings
from orgsafe.errors import ConfigError, DatabaseError, DatabaseUnavailable

CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class DatabaseTarget:
    admin_url: str
    owner_url: str
    app_url: str
    app_role: str
    embedded: bool

    def describe(self) -> str:
        return redact(self.owner_url)


def with_user(
    url: str, user: str, password: str | None, dbname: str | None = None
) -> str:
    """The same server as `url`, as another role (and maybe another database)."""
    params = conninfo.conninfo_to_dict(url)
    params.pop("password", None)
    params["user"] = user
    if password:
        params["password"] = password
    if dbname:
        params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def redact(url: str) -> str:
    """A connection string safe to print or log: no password."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - a mask, not a password
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def resolve_target(settings: Settings) -> DatabaseTarget:
    """The database orgsafe works on: DATABASE_URL, else the embedded server."""
    if settings.database_url:
        return _external_target(settings, settings.database_url)
    from orgsafe.storage.embedded import start_embedded

    return start_embedded(settings)


def check_url(url: str, name: str) -> str:
    """The URL if it parses; the error never repeats it: it may hold a password."""
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(f"{name} is not a valid connection string") from None
    return url


def _external_target(settings: Settings, url: str) -> DatabaseTarget:
    check_url(url, "DATABASE_URL")
    app_url = settings.app_database_url or with_user(
        url, settings.app_role, settings.app_password
    )
    check_url(app_url, "ORGSAFE_APP_DATABASE_URL")
    return DatabaseTarget(
        admin_url=url,
        owner_url=url,
        app_url=app_url,
        app_role=settings.app_role,
        embedded=False,
    )


def connect(
    url: str, *, autocommit: bool = False
) -> psycopg.Connection[tuple[object, ...]]:
    """A synchronous connection, with connection failures translated."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {redact(url)}: {_first_line(exc)}"
        ) from exc


def translate(exc: psycopg.Error, doing: str) -> NoReturn:
    """Raise the orgsafe error for a psycopg error, keeping cause and SQLSTATE."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        raise DatabaseUnavailable(f"{doing}: {_first_line(exc)}") from exc
    raise DatabaseError(f"{doing}: {_first_line(exc)}", exc.sqlstate) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
