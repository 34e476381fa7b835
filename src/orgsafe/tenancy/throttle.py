"""Login throttling, kept in the database so that every copy of the service agrees.

Attempts are counted per account (a hash of the normalised email, known or not)
and per client address, within a window, before the password is checked. Past the
limit, the key is blocked for a while and every attempt on it answers 429 with
Retry-After. A success clears its account's count and does not count against its
address. Password changes count against the account too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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
    row: tuple[Any, ...] | None = await cur.fetchone()
    seconds = row[0] if row else None
    return math.ceil(float(seconds)) if seconds is not None else 0


async def attempt(conn: Conn, found: dict[str, str], limits: Limits) -> int:
    """Count one attempt on every key; seconds to wait if one is past its limit.

    The count goes up before the password is checked, in a statement that locks
    the key's row, so parallel guesses cannot all slip in under the limit.
    """
    wait = 0
    for kind, key in found.items():
        limit = (
            limits.account_failures if kind == "account" else limits.address_failures
        )
        cur = await conn.execute(
            "INSERT INTO login_throttle AS t (key, failures, window_started_at)"
            " VALUES (%(key)s, 1, now())"
            " ON CONFLICT (key) DO UPDATE SET"
            "   failures = CASE WHEN t.window_started_at < now() - %(window)s"
            "                   THEN 1 ELSE t.failures + 1 END,"
            "   window_started_at = CASE WHEN t.window_started_at < now() - %(window)s"
            "                   THEN now() ELSE t.window_started_at END"
            " RETURNING failures",
            {"key": key, "window": limits.window},
        )
        row: tuple[Any, ...] | None = await cur.fetchone()
        if row is not None and int(row[0]) > limit:
            await conn.execute(
                "UPDATE login_throttle SET blocked_until = now() + %s WHERE key = %s",
                (limits.lockout, key),
            )
            wait = max(wait, math.ceil(limits.lockout.total_seconds()))
    return wait


async def record_success(conn: Conn, found: dict[str, str]) -> None:
    """Clear the account; give the address back the attempt that succeeded."""
    await conn.execute("DELETE FROM login_throttle WHERE key = %s", (found["account"],))
    if "address" in found:
        await conn.execute(
            "UPDATE login_throttle SET failures = greatest(failures - 1, 0)"
            " WHERE key = %s",
            (found["address"],),
        )
