"""What every HTTP request passes through before and after its route: one layer.

In order: a request id, tagged on the response; the body limit (413); the
cross-site check (403); then the app. Once the response has been sent, the
request is counted and timed for `/metrics`, and a 4xx writes the denial log.
A client that hangs up before the end of its body is counted as 499 and its
request never reaches a route.

One layer rather than four on purpose: each ASGI layer costs a coroutine and a
wrapped `send` on every request, and this path is every request.
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgsafe.logs import get_logger
from orgsafe.web.limits import (
    ClientGone,
    cross_site,
    read_limited,
    refuse,
    too_long,
)
from orgsafe.web.metrics import Metrics

log = get_logger("orgsafe.web")
TOO_LARGE = "Request body too large"
# nginx's code for a request whose client hung up before it could be answered.
CLIENT_CLOSED = 499


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        allowed_origins: frozenset[str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = os.urandom(16).hex()
        scope["orgsafe.request_id"] = request_id
        tag = (b"x-request-id", request_id.encode())
        status = 500

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        try:
            await self.admit(scope, receive, tagged)
        except ClientGone:
            # Nobody to answer; counted under the status proxies use for it.
            status = CLIENT_CLOSED
        finally:
            self.metrics.record(scope, status, time.perf_counter() - start)
            if 400 <= status < 500 and status != CLIENT_CLOSED:
                write_denial(scope, status, request_id)

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(_decoded(scope))
        declared = headers.get("content-length")
        if declared is not None and too_long(declared, self.max_body_bytes):
            await refuse(scope, send, 413, TOO_LARGE, "body_too_large")
            return
        if declared is not None or "transfer-encoding" in headers:
            body = await read_limited(receive, self.max_body_bytes)
            if body is None:
                await refuse(scope, send, 413, TOO_LARGE, "body_too_large")
                return
            receive = _replay(body, receive)
        # HTTP/1.1: neither header means no body; nothing to read or count.
        if cross_site(scope, headers, self.allowed_origins):
            await refuse(scope, send, 403, "Cross-site request refused", "cross_site")
            return
        await self.app(scope, receive, send)


def _decoded(scope: Scope) -> list[tuple[str, str]]:
    # The first of a repeated header wins, as starlette's Headers.get does.
    pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    return pairs[::-1]


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def write_denial(scope: Scope, status: int, request_id: str) -> None:
    facts: dict[str, Any] = scope.get("orgsafe.audit", {})
    log.warning(
        "request_denied",
        status=status,
        method=scope["method"],
        path=scope["path"],
        reason=facts.get("reason", "not_found" if status == 404 else "refused"),
        request_id=request_id,
        user_id=facts.get("user_id"),
        session_org_id=facts.get("session_org_id"),
        header_org_id=facts.get("header_org_id"),
        effective_org_id=facts.get("effective_org_id"),
        requested_org_id=facts.get("requested_org_id"),
    )
