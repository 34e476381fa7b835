"""Two service processes behind PgBouncer in transaction mode leak no org.

Many clients of three orgs talk to two `orgsafe serve` processes at once; both
reach PostgreSQL through one PgBouncer that keeps only a few server connections,
so transactions of different orgs take turns on the same PostgreSQL sessions.
Every answer must hold its own org's customers only, and every create must land
in the caller's org. A first test shows that the pooler really shares sessions:
a session-level setting does leak through it, the per-transaction one does not.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy import accounts
from tests.plugins.database import APP_PASSWORD
from tests.plugins.service import COOKIE, PASSWORD, add_customer

if TYPE_CHECKING:
    from tests.plugins.pgbouncer import Bouncer

# Imported by pytest, not here, so that its asserts are rewritten.
pytest_plugins = ["tests.plugins.pgbouncer"]

pytestmark = pytest.mark.slow

ORGS = 3
CLIENTS_PER_ORG = 8
ROUNDS = 10  # each round is a list, a create and a get: 30 requests per client
START_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class OrgFixture:
    id: uuid.UUID
    tag: str
    email: str
    customer_ids: frozenset[uuid.UUID]


def test_session_setting_leaks_through_the_pooler_transaction_setting_does_not(
    target: DatabaseTarget, pgbouncer: Bouncer
) -> None:
    url = pgbouncer.url(target.app_role, APP_PASSWORD)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as first:
        first.execute("SELECT set_config('app.probe', 'session', false)")
        with first.transaction():
            first.execute("SELECT set_config('app.local', 'transaction', true)")
    seen = []
    for _ in range(4):
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as other:
            row = other.execute(
                "SELECT current_setting('app.probe', true),"
                " current_setting('app.local', true)"
            ).fetchone()
            seen.append(row)
    assert ("session", "") in seen or ("session", None) in seen
    assert all(local in ("", None) for _, local in seen)


def test_two_services_behind_pgbouncer_keep_orgs_apart(
    target: DatabaseTarget, pgbouncer: Bouncer, tmp_path: Path
) -> None:
    orgs = [make_org(target, n) for n in range(ORGS)]
    ports = [start_service(target, pgbouncer, tmp_path, n) for n in range(2)]
    clients = [(org, n, ports[n % 2]) for org in orgs for n in range(CLIENTS_PER_ORG)]

    with ThreadPoolExecutor(max_workers=len(clients)) as workers:
        created = list(workers.map(lambda c: run_client(*c, ports), clients))

    for org, made in zip([c[0] for c in clients], created, strict=True):
        assert len(made) == ROUNDS
        stored = rows_of(target, made)
        assert set(stored) == set(made)
        assert set(stored.values()) == {org.id}


# --- the world ----------------------------------------------------------------


def make_org(target: DatabaseTarget, n: int) -> OrgFixture:
    tag = f"org{n}-{uuid.uuid4().hex[:6]}"
    org = accounts.create_org(target, f"Bouncer {tag}")
    email = f"{tag}@example.test"
    accounts.create_user(target, email, PASSWORD, [org])
    ids = frozenset(add_customer(target, org, f"{tag} seed {i}") for i in range(5))
    return OrgFixture(org, tag, email, ids)


def rows_of(target: DatabaseTarget, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    with connect(target.admin_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT id, org_id FROM customers WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {row[0]: row[1] for row in found}


# --- two service processes ----------------------------------------------------


@pytest.fixture(autouse=True)
def _stop_services() -> Iterator[None]:
    yield
    for process in RUNNING:
        process.terminate()
    for process in RUNNING:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    RUNNING.clear()


RUNNING: list[subprocess.Popen[bytes]] = []


def start_service(
    target: DatabaseTarget, bouncer: Bouncer, folder: Path, n: int
) -> int:
    from tests.plugins.pgbouncer import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGSAFE_")}
    env.update(
        # Schema and role set-up, as an operator would run them: direct.
        DATABASE_URL=target.owner_url,
        ORGSAFE_APP_DATABASE_URL=bouncer.url(target.app_role, APP_PASSWORD),
        ORGSAFE_APP_ROLE=target.app_role,
        ORGSAFE_APP_PASSWORD=APP_PASSWORD,
        ORGSAFE_POOLER="transaction",
        ORGSAFE_POOL_MAX_SIZE="6",
        # Each org's clients log in at once as one user: attempts in flight
        # count against the login throttle, which is not what this test is about.
        ORGSAFE_LOGIN_ACCOUNT_FAILURES="100",
        ORGSAFE_LOGIN_ADDRESS_FAILURES="1000",
    )
    log = folder / f"service{n}.log"
    with log.open("wb") as out:
        RUNNING.append(
            subprocess.Popen(
                [sys.executable, "-m", "orgsafe", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    wait_ready(port, RUNNING[-1], log)
    return port


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"service on port {port} not ready: {log.read_text()}")


# --- one client ---------------------------------------------------------------


def request(
    port: int, method: str, path: str, cookie: str | None = None, body: Any = None
) -> tuple[int, Any, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    payload = json.dumps(body) if body is not None else None
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None, response


def login(port: int, email: str) -> str:
    status, _, response = request(
        port, "POST", "/api/auth/login", body={"email": email, "password": PASSWORD}
    )
    assert status == 200
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name.strip() == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError("no session cookie")


def run_client(
    org: OrgFixture, n: int, first_port: int, ports: list[int]
) -> list[uuid.UUID]:
    """Ten rounds of list, create, get, alternating between both services."""
    cookie = login(first_port, org.email)
    made: list[uuid.UUID] = []
    for turn in range(ROUNDS):
        port = ports[(n + turn) % len(ports)]
        status, page, _ = request(port, "GET", "/api/customers?limit=100", cookie)
        assert status == 200
        assert {item["orgId"] for item in page["items"]} == {str(org.id)}
        assert all(item["name"].startswith(org.tag) for item in page["items"])
        assert org.customer_ids <= {uuid.UUID(i["id"]) for i in page["items"]}
        body = {"name": f"{org.tag} client {n} turn {turn}"}
        status, new, _ = request(port, "POST", "/api/customers", cookie, body)
        assert status == 201 and new["orgId"] == str(org.id)
        made.append(uuid.UUID(new["id"]))
        status, one, _ = request(port, "GET", f"/api/customers/{new['id']}", cookie)
        assert status == 200 and one["orgId"] == str(org.id)
    return made
