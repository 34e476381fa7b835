"""The tenancy guard: the one place a request becomes a user acting in an org.

`Guard.session()` authenticates; `Guard.tenant()` also settles the effective org and
sets `app.org_id` for the transaction, so row-level security scopes every query
that follows. Both yield inside one transaction on one pooled connection, and
record what they learn for the denial log.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from orgsafe.config import Settings
from orgsafe.errors import RequestError
from orgsafe.tenancy import sessions, throttle
from orgsafe.tenancy.choice import OrgChoice, choose_org, header_report
from orgsafe.tenancy.sessions import Conn, Identity, SessionRow

ORG_HEADER = "x-org-id"
NOT_AUTHENTICATED = "Not authenticated"


@dataclass(frozen=True)
class Authenticated:
    conn: Conn
    token: str
    session: SessionRow
    identity: Identity
    # What app.org_id holds already: set by the lookup, or empty.
    preset_org_id: str = ""


@dataclass(frozen=True)
class Tenant:
    conn: Conn
    user_id: uuid.UUID
    org_id: uuid.UUID
    choice: OrgChoice


def audit(request: Request) -> dict[str, Any]:
    """The per-request facts that the denial log line reports."""
    facts: dict[str, Any] = request.scope.setdefault("orgsafe.audit", {})
    return facts


class Guard:
    def __init__(self, pool: AsyncConnectionPool[Any], settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.lifetime = timedelta(hours=settings.session_absolute_hours)
        self.limits = throttle.Limits(
            account_failures=settings.login_account_failures,
            address_failures=settings.login_address_failures,
            window=timedelta(seconds=settings.login_window_seconds),
            lockout=timedelta(seconds=settings.login_lockout_seconds),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def session(
        self, request: Request, preset_org: bool = False
    ) -> AsyncIterator[Authenticated]:
        token = self.token(request)
        async with self.transaction() as conn:
            # An expired session is deleted on sight; that delete must commit.
            auth = await self.authenticate(request, conn, token, preset_org)
            if auth is not None:
                yield auth
        if auth is None:
            raise RequestError(401, NOT_AUTHENTICATED, "unknown_session")

    @asynccontextmanager
    async def tenant(self, request: Request) -> AsyncIterator[Tenant]:
        token = self.token(request)
        async with self.transaction() as conn:
            found = await self.settle(request, conn, token)
            if found is not None:
                yield found
        if found is None:
            raise RequestError(401, NOT_AUTHENTICATED, "unknown_session")

    def token(self, request: Request) -> str:
        facts = audit(request)
        facts["header_org_id"] = header_report(self.header_values(request))
        token = request.cookies.get(self.settings.cookie_name)
        if not token or len(token) > 128:
            raise RequestError(401, NOT_AUTHENTICATED, "no_session")
        return token

    async def authenticate(
        self, request: Request, conn: Conn, token: str, preset_org: bool
    ) -> Authenticated | None:
        found = await sessions.lookup(conn, token, self.idle, preset_org)
        if found is None:
            return None
        facts = audit(request)
        facts["user_id"] = str(found.session.user_id)
        facts["session_org_id"] = _text(found.session.org_id)
        return Authenticated(
            conn, token, found.session, found.identity, found.preset_org_id
        )

    async def settle(self, request: Request, conn: Conn, token: str) -> Tenant | None:
        """The user and the effective org, set for the transaction; None if no session.

        Most requests come with a live session whose org the user still holds,
        and `sessions.settle` answers those with two index reads. The rest (no
        org on the session, an org the user has left, an expired or unknown
        session) go the full way. So does every request that carries the org
        header outside production: the header must be checked against every
        membership even when the session's org wins, and only the full lookup
        reads them.
        """
        headers = self.header_values(request)
        if self.settings.is_production or not headers:
            settled = await sessions.settle(conn, token, self.idle)
            if settled is not None:
                return self.settled(request, conn, settled, headers)
        auth = await self.authenticate(request, conn, token, preset_org=True)
        if auth is None:
            return None
        choice = self.choose(request, auth)
        org = choice.effective_org_id
        if org is None:
            raise RequestError(401, NOT_AUTHENTICATED, "no_org")
        if auth.preset_org_id != str(org):
            await sessions.set_local(conn, "app.org_id", org)
        return Tenant(conn, auth.session.user_id, org, choice)

    def settled(
        self,
        request: Request,
        conn: Conn,
        settled: sessions.Settled,
        headers: list[str],
    ) -> Tenant:
        facts = audit(request)
        facts["user_id"] = str(settled.user_id)
        facts["session_org_id"] = str(settled.org_id)
        # The session's org is held, and no header needs checking (production
        # never reads it; elsewhere there was none): that one membership is all
        # the rule needs to know to pick the session's org.
        choice = self.pick(request, settled.org_id, headers, {settled.org_id}, None)
        return Tenant(conn, settled.user_id, settled.org_id, choice)

    def choose(self, request: Request, auth: Authenticated) -> OrgChoice:
        return self.pick(
            request,
            auth.session.org_id,
            self.header_values(request),
            auth.identity.member_org_ids,
            auth.identity.default_org_id,
        )

    def pick(
        self,
        request: Request,
        session_org_id: uuid.UUID | None,
        headers: list[str],
        member_org_ids: Collection[uuid.UUID],
        default_org_id: uuid.UUID | None,
    ) -> OrgChoice:
        choice = choose_org(
            self.settings.env, session_org_id, headers, member_org_ids, default_org_id
        )
        audit(request)["effective_org_id"] = _text(choice.effective_org_id)
        return choice

    @staticmethod
    def header_values(request: Request) -> list[str]:
        return request.headers.getlist(ORG_HEADER)


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
