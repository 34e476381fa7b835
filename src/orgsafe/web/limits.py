"""Refusals made before a request reaches a route: size and cross-site origin.

`web.edge.Edge` applies them, in this order, to every request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCH = frozenset({"same-origin", "none"})


async def refuse(
    scope: Scope, send: Send, status: int, message: str, reason: str
) -> None:
    scope.setdefault("orgsafe.audit", {})["reason"] = reason
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ClientGone(Exception):
    """The client closed the connection before the end of its request body."""


def too_long(declared: str, limit: int) -> bool:
    """A declared Content-Length over the limit, or one that is not a number."""
    try:
        return int(declared) > limit
    except ValueError:
        return True


async def read_limited(receive: Receive, limit: int) -> bytes | None:
    """The whole body, read before any route or parser sees it; None past the limit,
    whether or not its length was declared. ClientGone if the client hangs up
    first: a cut-off body must never reach a route as if it were whole."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def cross_site(
    scope: Scope, headers: Mapping[str, str], allowed: frozenset[str]
) -> bool:
    """A state-changing request that a browser marks as cross-site.

    Browsers send `Sec-Fetch-Site` and `Origin` with such requests; a client that
    sends neither (curl, a server) is not a browser riding a user's cookie.
    """
    if scope["method"] in SAFE_METHODS:
        return False
    origin = headers.get("origin")
    if origin is not None:
        origin = origin.strip().rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        return origin != own and origin not in allowed
    fetch_site = headers.get("sec-fetch-site")
    return fetch_site is not None and fetch_site.lower() not in SAME_SITE_FETCH
