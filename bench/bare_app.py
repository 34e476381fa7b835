"""The customers endpoints with no guard: the yardstick for the guarded service.

Same framework, same edge layer (request ids, body limit, cross-site check,
metrics), same uvicorn and process settings, same pool size, same SQL text (it
reuses `CustomerStore`) and the same response bodies; but no session, no
membership check, no org setting and no row-level security: the org comes from
the path and the pool connects as a role that bypasses row security.
(bench/guard_steps.py also serves it as the app role, with one step of the guard
added in each request's transaction, to price that step.) On the
requests the benchmark sends, what separates the two apps is the tenancy guard
and nothing else, so `/healthz`, which the guard does not touch, serves alike on
both. (The service's error handlers and graceful shutdown are not copied: no
request of the benchmark reaches them.)

    BARE_DATABASE_URL=... python bench/bare_app.py --port 8101
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool

from orgsafe.cli.admin import settle_collector
from orgsafe.config import Settings
from orgsafe.tenancy.customers import CustomerStore
from orgsafe.web.app import add_edge
from orgsafe.web.schemas import CustomerIn, CustomerOut, CustomerPage, Status

# Something to run in each request's transaction before the store's statement;
# only bench/guard_steps.py gives one, to price a step of the guard on its own.
Step = Callable[[Any, uuid.UUID], Awaitable[None]]


def make_app(url: str, settings: Settings, step: Step | None = None) -> FastAPI:
    # Sized and configured as orgsafe.web.app.make_pool does for the service.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_max_size, settings.pool_min_size),
        timeout=settings.pool_timeout_seconds,
        kwargs={"connect_timeout": 5, "prepare_threshold": 0},
        open=False,
        name="bench-bare",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.pool = pool
    app.state.step = step
    add_routes(app)
    # The service's edge layer and metrics, exactly as the service adds them.
    add_edge(app, pool, settings)
    return app


@asynccontextmanager
async def store(request: Request, org: uuid.UUID) -> AsyncIterator[CustomerStore]:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    step: Step | None = request.app.state.step
    async with pool.connection() as conn, conn.transaction():
        if step is not None:
            await step(conn, org)
        yield CustomerStore(conn, org)


def out(customer: Any) -> CustomerOut:
    return CustomerOut.model_validate(customer, from_attributes=True)


def add_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Status)
    async def healthz() -> Status:
        return Status(status="ok")

    @app.get("/bare/orgs/{org}/customers", response_model=CustomerPage)
    async def list_customers(
        org: uuid.UUID, request: Request, limit: int = 50
    ) -> CustomerPage:
        async with store(request, org) as customers:
            page = await customers.page(limit, None)
        items = [out(c) for c in page.items]
        return CustomerPage(items=items, next_cursor=page.next_cursor)

    @app.get("/bare/orgs/{org}/customers/{id}", response_model=CustomerOut)
    async def get_customer(org: uuid.UUID, id: uuid.UUID, request: Request) -> Any:
        async with store(request, org) as customers:
            found = await customers.get(id)
        return out(found) if found else None

    @app.post("/bare/orgs/{org}/customers", response_model=CustomerOut, status_code=201)
    async def create_customer(
        org: uuid.UUID, body: CustomerIn, request: Request
    ) -> CustomerOut:
        async with store(request, org) as customers:
            created = await customers.create(body.name, body.email)
        return out(created)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(make_app(os.environ["BARE_DATABASE_URL"], Settings()), args.port)


def serve(app: FastAPI, port: int) -> None:
    # What `orgsafe serve` gives uvicorn and the process: the same event loop and
    # the same collector settings. Without the latter this yardstick served about
    # 14% fewer reads, and the guarded/bare ratios looked that much better.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
        loop="asyncio",
    )
    settle_collector()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
