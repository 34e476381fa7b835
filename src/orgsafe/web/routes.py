"""Routes. Each one asks the guard for its user and org; none checks tenancy itself."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from orgsafe.errors import RequestError, UsageError
from orgsafe.tenancy import sessions, throttle
from orgsafe.tenancy.accounts import normalise_email
from orgsafe.tenancy.choice import parse_uuid
from orgsafe.tenancy.customers import (
    PAGE_MAX,
    BadCursor,
    Customer,
    CustomerStore,
    OrgMissing,
)
from orgsafe.tenancy.passwords import hash_password, password_problem, verify_password
from orgsafe.tenancy.sessions import Conn
from orgsafe.web.guard import NOT_AUTHENTICATED, Authenticated, Guard, audit
from orgsafe.web.schemas import (
    CustomerIn,
    CustomerOut,
    CustomerPage,
    CustomerPatch,
    ErrorBody,
    LoginBody,
    LoginResult,
    PasswordChange,
    Status,
    SwitchOrgBody,
    SwitchOrgResult,
    WhoAmI,
)

router = APIRouter()


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Malformed request",
        401: "Not authenticated",
        403: "Forbidden",
        404: "Not found",
        413: "Request body too large",
        429: "Too many attempts; see Retry-After",
        503: "Database unavailable or busy",
    }
    return {
        code: {"model": ErrorBody, "description": described[code]} for code in codes
    }


def guard(request: Request) -> Guard:
    found: Guard = request.app.state.guard
    return found


def customer_id(raw: str) -> uuid.UUID:
    # Malformed, unknown and other-org ids all look the same from outside.
    parsed = parse_uuid(raw)
    if parsed is None:
        raise RequestError(404, "Customer not found", "malformed_id")
    return parsed


def not_found() -> RequestError:
    return RequestError(404, "Customer not found", "customer_not_found")


def out(customer: Customer) -> CustomerOut:
    return CustomerOut.model_validate(customer, from_attributes=True)


def set_cookie(request: Request, response: Response, token: str) -> None:
    g = guard(request)
    response.set_cookie(
        g.settings.cookie_name,
        token,
        max_age=int(g.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=g.settings.is_production,
    )


# --- authentication ---------------------------------------------------------


@router.post(
    "/api/auth/login",
    response_model=LoginResult,
    responses=errors(400, 401, 403, 413, 429, 503),
    tags=["auth"],
)
async def login(body: LoginBody, request: Request, response: Response) -> LoginResult:
    g = guard(request)
    email = normalised_or_blank(body.email)
    address = request.client.host if request.client else None
    counted = throttle.keys(email or body.email.strip().lower(), address)
    async with g.transaction() as conn:
        wait = await throttle.blocked_for(conn, counted)
        wait = wait or await throttle.attempt(conn, counted, g.limits)
        user = None if wait else await find_user(conn, email)
    if wait:
        raise too_many_attempts(wait)
    stored = str(user[1]) if user else None
    if not await asyncio.to_thread(verify_password, stored, body.password) or not user:
        raise RequestError(401, "Invalid email or password", "bad_credentials")
    user_id = uuid.UUID(str(user[0]))
    audit(request)["user_id"] = str(user_id)
    async with g.transaction() as conn:
        await throttle.record_success(conn, counted)
        old = request.cookies.get(g.settings.cookie_name)
        if old and len(old) <= 128:
            await sessions.end_session(conn, old)
        identity = await sessions.load_identity(conn, user_id)
        org = identity.default_org_id
        org = org if org in identity.member_org_ids else None
        token = await sessions.create_session(conn, user_id, org, None, g.lifetime)
    set_cookie(request, response, token)
    return LoginResult(user_id=user_id, org_id=org)


def normalised_or_blank(raw: str) -> str:
    try:
        return normalise_email(raw)
    except UsageError:
        return ""


def too_many_attempts(seconds: int) -> RequestError:
    return RequestError(
        429,
        "Too many login attempts, try again later",
        "login_throttled",
        {"Retry-After": str(max(1, seconds))},
    )


async def find_user(conn: Conn, email: str) -> tuple[Any, ...] | None:
    await sessions.set_local(conn, "app.login_email", email)
    cur = await conn.execute(
        "SELECT id, password_hash, default_org_id FROM users WHERE lower(email) = %s",
        (email,),
    )
    return await cur.fetchone()


@router.post(
    "/api/auth/password",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(400, 401, 403, 413, 429, 503),
    tags=["auth"],
)
async def change_password(body: PasswordChange, request: Request) -> Response:
    g = guard(request)
    problem = password_problem(body.new_password)
    if problem:
        raise RequestError(400, f"newPassword: {problem}", "weak_password")
    # Guesses of the current password count like failed logins of the account.
    async with g.session(request) as auth:
        cur = await auth.conn.execute(
            "SELECT email, password_hash FROM users WHERE id = %s",
            (auth.session.user_id,),
        )
        row = await cur.fetchone()
        counted = throttle.keys(str(row[0]) if row else "", None)
        wait = await throttle.blocked_for(auth.conn, counted)
        wait = wait or await throttle.attempt(auth.conn, counted, g.limits)
    if wait:
        raise too_many_attempts(wait)
    stored = str(row[1]) if row else None
    if not await asyncio.to_thread(verify_password, stored, body.current_password):
        raise RequestError(403, "Current password is wrong", "bad_current_password")
    new_hash = await asyncio.to_thread(hash_password, body.new_password)
    async with g.session(request) as auth:
        await throttle.record_success(auth.conn, counted)
        await auth.conn.execute(
            "UPDATE users SET password_hash = %s, password_changed_at = now()"
            " WHERE id = %s",
            (new_hash, auth.session.user_id),
        )
        await auth.conn.execute("SELECT end_other_sessions()")
        token = await rotate(g, auth)
    response = Response(status_code=HTTP_204_NO_CONTENT)
    set_cookie(request, response, token)
    return response


async def rotate(g: Guard, auth: Authenticated, org: uuid.UUID | None = None) -> str:
    """A new token for the same session life; the old one stops working."""
    await sessions.end_session(auth.conn, auth.token)
    return await sessions.create_session(
        auth.conn,
        auth.session.user_id,
        org if org is not None else auth.session.org_id,
        auth.session.expires_at,
        g.lifetime,
    )


@router.post(
    "/api/auth/logout",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(401, 403, 413, 503),
    tags=["auth"],
)
async def logout(request: Request) -> Response:
    g = guard(request)
    token = request.cookies.get(g.settings.cookie_name)
    if not token or len(token) > 128:
        raise RequestError(401, NOT_AUTHENTICATED, "no_session")
    async with g.transaction() as conn:
        ended = await sessions.end_session(conn, token)
    if not ended:
        raise RequestError(401, NOT_AUTHENTICATED, "unknown_session")
    response = Response(status_code=HTTP_204_NO_CONTENT)
    response.delete_cookie(
        g.settings.cookie_name,
        path="/",
        httponly=True,
        samesite="lax",
        secure=g.settings.is_production,
    )
    return response


@router.post(
    "/api/session/org",
    response_model=SwitchOrgResult,
    responses=errors(400, 401, 403, 413, 503),
    tags=["auth"],
)
async def switch_org(
    body: SwitchOrgBody, request: Request, response: Response
) -> SwitchOrgResult:
    g = guard(request)
    audit(request)["requested_org_id"] = body.org_id[:64]
    async with g.session(request) as auth:
        org = parse_uuid(body.org_id.strip())
        if org is None:
            raise RequestError(400, "orgId: not a uuid", "org_malformed")
        if org not in auth.identity.member_org_ids:
            raise RequestError(403, "Not a member of this org", "switch_not_member")
        # A new token for the new org; the absolute expiry does not move.
        token = await rotate(g, auth, org)
    set_cookie(request, response, token)
    return SwitchOrgResult(org_id=org)


@router.get(
    "/api/debug/whoami",
    response_model=WhoAmI,
    responses=errors(400, 401, 403, 503),
    tags=["auth"],
)
async def whoami(request: Request) -> WhoAmI:
    g = guard(request)
    async with g.session(request) as auth:
        choice = g.choose(request, auth)
    return WhoAmI(
        user_id=auth.session.user_id,
        session_org_id=auth.session.org_id,
        header_org_id=choice.header_org_id,
        header_ignored=choice.header_ignored,
        effective_org_id=choice.effective_org_id,
        org_source=choice.source,
        environment=g.settings.env.value,
    )


# --- customers --------------------------------------------------------------


@router.get(
    "/api/customers",
    response_model=CustomerPage,
    responses=errors(400, 401, 403, 503),
    tags=["customers"],
)
async def list_customers(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CustomerPage:
    async with guard(request).tenant(request) as tenant:
        try:
            page = await CustomerStore(tenant.conn, tenant.org_id).page(limit, cursor)
        except BadCursor:
            raise RequestError(400, "cursor is malformed", "bad_cursor") from None
    return CustomerPage(
        items=[out(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/api/customers",
    response_model=CustomerOut,
    status_code=HTTP_201_CREATED,
    responses=errors(400, 401, 403, 413, 503),
    tags=["customers"],
)
async def create_customer(body: CustomerIn, request: Request) -> CustomerOut:
    async with guard(request).tenant(request) as tenant:
        store = CustomerStore(tenant.conn, tenant.org_id)
        try:
            created = await store.create(body.name, body.email)
        except OrgMissing:
            raise RequestError(400, "Invalid org", "org_missing") from None
    return out(created)


@router.get(
    "/api/customers/{id}",
    response_model=CustomerOut,
    responses=errors(400, 401, 403, 404, 503),
    tags=["customers"],
)
async def get_customer(id: str, request: Request) -> CustomerOut:
    wanted = customer_id(id)
    async with guard(request).tenant(request) as tenant:
        found = await CustomerStore(tenant.conn, tenant.org_id).get(wanted)
    if found is None:
        raise not_found()
    return out(found)


@router.patch(
    "/api/customers/{id}",
    response_model=CustomerOut,
    responses=errors(400, 401, 403, 404, 413, 503),
    tags=["customers"],
)
async def update_customer(
    id: str, body: CustomerPatch, request: Request
) -> CustomerOut:
    wanted = customer_id(id)
    changes = body.model_dump(exclude_unset=True, by_alias=False)
    async with guard(request).tenant(request) as tenant:
        updated = await CustomerStore(tenant.conn, tenant.org_id).update(
            wanted, changes
        )
    if updated is None:
        raise not_found()
    return out(updated)


@router.delete(
    "/api/customers/{id}",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(400, 401, 403, 404, 413, 503),
    tags=["customers"],
)
async def delete_customer(id: str, request: Request) -> Response:
    wanted = customer_id(id)
    async with guard(request).tenant(request) as tenant:
        deleted = await CustomerStore(tenant.conn, tenant.org_id).delete(wanted)
    if not deleted:
        raise not_found()
    return Response(status_code=HTTP_204_NO_CONTENT)


# --- health -----------------------------------------------------------------


@router.get("/healthz", response_model=Status, tags=["health"])
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=errors(503), tags=["health"])
async def readyz(request: Request) -> Status:
    async with guard(request).transaction() as conn:
        await conn.execute("SELECT 1")
    return Status(status="ready")


# Load balancers and uptime checks often probe with HEAD: the same answer, no body
# (uvicorn drops it). Kept out of the schema, which documents the GETs.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)
