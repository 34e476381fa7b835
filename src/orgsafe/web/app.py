"""The FastAPI application: lifecycle, routes, error mapping and the edge layer."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException

from orgsafe import __version__
from orgsafe.config import Settings
from orgsafe.errors import RequestError
from orgsafe.logs import get_logger
from orgsafe.storage import DatabaseTarget
from orgsafe.web import routes
from orgsafe.web.edge import Edge
from orgsafe.web.guard import Guard, audit
from orgsafe.web.metrics import Metrics

RETRY_SOON = {"Retry-After": "1"}
log = get_logger("orgsafe.web")


def create_app(settings: Settings, target: DatabaseTarget) -> FastAPI:
    pool = make_pool(settings, target)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True, timeout=settings.pool_timeout_seconds * 2)
        log.info("service_started", environment=settings.env.value, version=__version__)
        try:
            yield
        finally:
            await pool.close()
            log.info("service_stopped")

    app = FastAPI(
        title="orgsafe",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The routes themselves, not an included router: one less layer to match.
        # Known limit: app.dependency_overrides does not reach them (they keep
        # their router's); nothing here uses Depends.
        routes=list(routes.router.routes),
    )
    app.state.guard = Guard(pool, settings)
    app.state.settings = settings
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    add_edge(app, pool, settings)
    return app


def add_edge(app: FastAPI, pool: AsyncConnectionPool[Any], settings: Settings) -> None:
    """`/metrics` and the edge layer that every request passes, guarded or not.

    bench/bare_app.py calls it too, so that the yardstick's edge is this one.
    """
    metrics = Metrics()
    metrics.watch_pool(pool)
    # Plain text for Prometheus, outside the JSON API and its schema.
    app.add_api_route(
        "/metrics",
        guarded_metrics(metrics, settings),
        include_in_schema=False,
        response_class=Response,
    )
    app.add_middleware(
        Edge,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        allowed_origins=settings.origins,
    )


def openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """The schema, minus FastAPI's default 422: invalid input answers 400 here."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = spec
    return spec


def guarded_metrics(
    metrics: Metrics, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics behind its bearer token; without one, outside production only."""
    token = settings.metrics_token
    wanted = f"Bearer {token}".encode() if token else None

    async def endpoint(request: Request) -> Response:
        if wanted is None and settings.is_production:
            raise RequestError(
                403, "metrics are off: set ORGSAFE_METRICS_TOKEN", "metrics_off"
            )
        given = request.headers.get("authorization", "").encode("latin-1")
        if wanted is not None and not hmac.compare_digest(given, wanted):
            raise RequestError(
                401,
                "metrics need the bearer token",
                "metrics_token",
                {"WWW-Authenticate": "Bearer"},
            )
        return metrics.render()

    return endpoint


def make_pool(settings: Settings, target: DatabaseTarget) -> AsyncConnectionPool[Any]:
    # statement_timeout is the app role's own setting (see storage.migrate), so it
    # holds through a transaction pooler, where a session-level SET would not.
    prepare = None if settings.pooler == "transaction" else 0
    return AsyncConnectionPool(
        target.app_url,
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_max_size, settings.pool_min_size),
        timeout=settings.pool_timeout_seconds,
        kwargs={"connect_timeout": 5, "prepare_threshold": prepare},
        open=False,
        name="orgsafe-app",
    )


def error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        audit(request)["reason"] = exc.reason
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        audit(request)["reason"] = "invalid_request"
        return error(400, describe_validation(exc))

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        audit(request).setdefault("reason", "http_" + str(exc.status_code))
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(PoolTimeout)
    async def busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("pool_exhausted", path=request.url.path)
        return error(503, "Service busy, try again", RETRY_SOON)

    @app.exception_handler(psycopg.OperationalError)
    async def unavailable(
        request: Request, exc: psycopg.OperationalError
    ) -> JSONResponse:
        log.warning(
            "database_unavailable", path=request.url.path, sqlstate=exc.sqlstate
        )
        heal(request.app.state.guard.pool)
        return error(503, "Database unavailable", RETRY_SOON)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this one outside every middleware, the edge layer
        # included: the request id has to be added here.
        request_id = str(request.scope.get("orgsafe.request_id", ""))
        log.error(
            "request_failed",
            path=request.url.path,
            error=type(exc).__name__,
            request_id=request_id,
        )
        return error(500, "Internal error", {"x-request-id": request_id})


_healing: set[asyncio.Task[None]] = set()


def heal(pool: AsyncConnectionPool[Any]) -> None:
    """Test every idle connection now, so that after a database restart the broken
    ones go at once rather than one failed request at a time."""
    if _healing:
        return
    task = asyncio.get_running_loop().create_task(pool.check())
    _healing.add(task)
    task.add_done_callback(_healing.discard)


def describe_validation(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return "Request body is not valid JSON"
    if first.get("type") == "extra_forbidden":
        return f"Unknown field: {'.'.join(where)}"
    return f"{'.'.join(where) or 'body'}: {message}" if where else message
