"""Refusals made before a request reaches a route: size and cross-site origin."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class BodyLimit:
    """413 for a body over the limit, whether it announces its length or not.

    The body is read (up to the limit) before the app runs, so an oversized one is
    refused before any route or parser sees it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            # HTTP/1.1: neither header means no body; nothing to read or count.
            await self.app(scope, receive, send)
            return
        if declared is not None and _too_long(declared, self.max_bytes):
            await refuse(scope, send, 413, "Request body too large", "body_too_large")
            return
        body = await self._read(receive)
        if body is None:
            await refuse(scope, send, 413, "Request body too large", "body_too_large")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _too_long(declared: str, limit: int) -> bool:
    try:
        return int(declared) > limit
    except ValueError:
        return True


class SameOrigin:
    """403 for a state-changing request that a browser marks as cross-site.

    Browsers send `Sec-Fetch-Site` and `Origin` with such requests; a client that
    sends neither (curl, a server) is not a browser riding a user's cookie.
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            if self.cross_site(scope):
                await refuse(
                    scope, send, 403, "Cross-site request refused", "cross_site"
                )
                return
        await self.app(scope, receive, send)

    def cross_site(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None:
            return not self.origin_allowed(origin, scope, headers)
        fetch_site = headers.get("sec-fetch-site")
        return fetch_site is not None and fetch_site.lower() not in SAME_SITE_FETCH

    def origin_allowed(self, origin: str, scope: Scope, headers: Headers) -> bool:
        origin = origin.strip().rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        return origin == own or origin in self.allowed
