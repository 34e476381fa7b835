"""Server-side sessions, read and written through the app role.

The cookie carries an opaque random token; the table keeps only its SHA-256. Row
policies let a transaction see the one session whose hash it has set in
`app.session_hash`, and the one user in `app.user_id`: the app role cannot list
other people's sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

TOUCH_EVERY = timedelta(seconds=60)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Identity:
    default_org_id: uuid.UUID | None
    member_org_ids: frozenset[uuid.UUID]


Conn = AsyncConnection[tuple[object, ...]]


async def set_local(conn: Conn, name: str, value: object) -> None:
    """A setting that ends with the transaction (safe behind a transaction pooler)."""
    text = "" if value is None else str(value)
    await conn.execute("SELECT set_config(%s, %s, true)", (name, text))


@dataclass(frozen=True)
class Lookup:
    """A live session, its user's memberships, and the org the lookup preset."""

    session: SessionRow
    identity: Identity
    preset_org_id: str


async def lookup(
    conn: Conn, token: str, idle: timedelta, preset_org: bool
) -> Lookup | None:
    """The live session for `token` and its user's memberships, in one statement.

    `guard_lookup` (migration 0003) sets app.session_hash and app.user_id on the
    way, and app.org_id to the session's org when `preset_org` is true and the
    user still belongs to it. An expired session is deleted on sight.
    """
    cur = await conn.execute(
        "SELECT * FROM guard_lookup(%s, %s, %s, %s)",
        (token_hash(token), idle, TOUCH_EVERY, preset_org),
    )
    row: tuple[Any, ...] | None = await cur.fetchone()
    if row is None:
        return None
    if not row[5]:
        await conn.execute("DELETE FROM sessions WHERE id = %s", (row[0],))
        return None
    return Lookup(
        SessionRow(*row[:5]),
        Identity(row[6], frozenset(row[7] or ())),
        str(row[8]),
    )


@dataclass(frozen=True)
class Settled:
    """A live session whose org the user still belongs to, set for the transaction."""

    user_id: uuid.UUID
    org_id: uuid.UUID


async def settle(conn: Conn, token: str, idle: timedelta) -> Settled | None:
    """The lean lookup of a customer route: `guard_settle` (migration 0004).

    For a live session whose org the user still belongs to, it sets
    app.session_hash, app.user_id and app.org_id and returns the user and the
    org. Anything else (no such session, an expired one, no org, or an org the
    user has left) gives None, and settles nothing the caller relies on:
    `lookup` then decides.
    """
    cur = await conn.execute(
        "SELECT * FROM guard_settle(%s, %s, %s)",
        (token_hash(token), idle, TOUCH_EVERY),
    )
    row: tuple[Any, ...] | None = await cur.fetchone()
    if row is None or row[1] is None:
        return None
    return Settled(row[0], row[1])


async def load_identity(conn: Conn, user_id: uuid.UUID) -> Identity:
    await set_local(conn, "app.user_id", user_id)
    cur = await conn.execute(
        "SELECT u.default_org_id,"
        " ARRAY(SELECT m.org_id FROM memberships m WHERE m.user_id = u.id)"
        " FROM users u WHERE u.id = %s",
        (user_id,),
    )
    row: tuple[Any, ...] | None = await cur.fetchone()
    if row is None:
        return Identity(None, frozenset())
    return Identity(row[0], frozenset(row[1]))


async def create_session(
    conn: Conn,
    user_id: uuid.UUID,
    org_id: uuid.UUID | None,
    expires_at: datetime | None,
    lifetime: timedelta,
) -> str:
    """A new session; returns the token for the cookie (never stored)."""
    token = new_token()
    digest = token_hash(token)
    await set_local(conn, "app.user_id", user_id)
    await set_local(conn, "app.session_hash", digest)
    await conn.execute(
        "INSERT INTO sessions (token_hash, user_id, org_id, expires_at)"
        " VALUES (%s, %s, %s, coalesce(%s, now() + %s))",
        (digest, user_id, org_id, expires_at, lifetime),
    )
    return token


async def end_session(conn: Conn, token: str) -> bool:
    digest = token_hash(token)
    await set_local(conn, "app.session_hash", digest)
    cur = await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (digest,))
    return cur.rowcount > 0
