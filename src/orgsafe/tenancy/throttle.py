"""Login throttling, kept in the database so that every copy of the service agrees.

Failures are counted per account (a hash of the normalised email, known or not) and
per client address, within a window. Past the limit, the key is blocked for a while
and every login on it answers 429 with Retry-After, before any password is checked.
A successful login clears its account's count, not its address's.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta

from orgsafe.tenancy.sessions import Conn


@dataclass(frozen=True)
class Limits:
    account_failures: int
    address_failures: int
    window: timedelta
    lockout: timedelta


def keys(email: str, address: str | None) -> dict[str, str]:
    account = "account:" + hashlib.sha256(email.encode()).hexdigest()
    found = {"account": account}
    if address:
        found["address"] = "address:" + address[:64]
    return found


async def blocked_for(conn: Conn, found: dict[str, str]) -> int:
    """Seconds until every key is free again; 0 when none is blocked."""
    cur = await conn.execute(
        "SELECT extract(epoch FROM max(blocked_until) - now()) FROM login_throttle"
        " WHERE key = ANY(%s) AND blocked_until > now()",
        (list(found.values()),),
    )
    row = await cur.fetchone()
    seconds = row[0] if row else None
    return math.ceil(float(seconds)) if seconds is not None else 0  # type: ignore[arg-type]


async def record_failure(conn: Conn, found: dict[str, str], limits: Limits) -> None:
    for kind, key in found.items():
        limit = (
            limits.account_failures if kind == "account" else limits.address_failures
        )
        await conn.execute(
            "INSERT INTO login_throttle AS t (key, failures, window_started_at)"
            " VALUES (%(key)s, 1, now())"
            " ON CONFLICT (key) DO UPDATE SET"
            "   failures = CASE WHEN t.window_started_at < now() - %(window)s"
            "                   THEN 1 ELSE t.failures + 1 END,"
            "   window_started_at = CASE WHEN t.window_started_at < now() - %(window)s"
            "                   THEN now() ELSE t.window_started_at END",
            {"key": key, "window": limits.window},
        )
        await conn.execute(
            "UPDATE login_throttle SET blocked_until = now() + %s"
            " WHERE key = %s AND failures >= %s",
            (limits.lockout, key, limit),
        )


async def record_success(conn: Conn, found: dict[str, str]) -> None:
    await conn.execute("DELETE FROM login_throttle WHERE key = %s", (found["account"],))
