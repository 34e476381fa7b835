"""The service under test, in-process, on the real test database.

`api(env)` gives a client for an app built with that ORGSAFE_ENV (one app per
environment, shared by the tests). `world` makes a fresh S0-style fixture for each
test: orgs A and B, alice (A only), bob (B only), carol (no org), customers CA1, CA2
in A and CB1 in B, with everyone logged in.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orgsafe.config import Settings
from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy import accounts
from orgsafe.web import create_app

PASSWORD = "correct horse battery staple"
COOKIE = "orgsafe_session"


METRICS_TOKEN = "metrics-" + secrets.token_hex(12)


class Api:
    """A client that sends one user's cookie, or none, per call."""

    def __init__(self, client: TestClient, env: str) -> None:
        self.client = client
        self.env = env

    def call(
        self, method: str, path: str, cookie: str | None = None, **kwargs: Any
    ) -> Any:
        given = kwargs.pop("headers", None) or {}
        pairs = list(given.items()) if isinstance(given, dict) else list(given)
        if cookie:
            pairs.append(("Cookie", f"{COOKIE}={cookie}"))
        # Cookies travel only as each call says, never from a shared jar.
        self.client.cookies.clear()
        return self.client.request(method, path, headers=pairs, **kwargs)

    def metrics(self) -> Any:
        """GET /metrics with the shared apps' bearer token."""
        token = ("Authorization", f"Bearer {METRICS_TOKEN}")
        return self.call("GET", "/metrics", headers=[token])

    def login(self, email: str, password: str = PASSWORD) -> str:
        response = self.call(
            "POST", "/api/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return session_cookie(response)


def session_cookie(response: Any) -> str:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {response.headers}")


@contextmanager
def custom_api(target: DatabaseTarget, **settings: Any) -> Iterator[Api]:
    """A client for an app of its own, built with the given settings."""
    made = Settings(database_url=target.owner_url, **settings)
    with TestClient(
        create_app(made, target),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        yield Api(client, made.env.value)


@pytest.fixture(scope="session")
def api(target: DatabaseTarget) -> Iterator[Callable[[str], Api]]:
    made: dict[str, tuple[TestClient, Api]] = {}

    def get(env: str = "production") -> Api:
        if env not in made:
            settings = Settings(
                env=env, database_url=target.owner_url, metrics_token=METRICS_TOKEN
            )
            client = TestClient(
                create_app(settings, target),
                base_url="https://testserver",
                raise_server_exceptions=False,
            )
            client.__enter__()
            made[env] = (client, Api(client, env))
        return made[env][1]

    yield get
    for client, _ in made.values():
        client.__exit__(None, None, None)


@dataclass
class World:
    target: DatabaseTarget
    org_a: uuid.UUID
    org_b: uuid.UUID
    alice: str
    bob: str
    carol: str
    alice_id: uuid.UUID
    bob_id: uuid.UUID
    carol_id: uuid.UUID
    ca1: uuid.UUID
    ca2: uuid.UUID
    cb1: uuid.UUID
    cookies: dict[str, str] = field(default_factory=dict)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL as the admin role (sees every org's rows)."""
        with connect(self.target.admin_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def add_customer(target: DatabaseTarget, org: uuid.UUID, name: str) -> uuid.UUID:
    with connect(target.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO customers (org_id, name) VALUES (%s, %s) RETURNING id",
            (org, name),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def make_user(
    target: DatabaseTarget, name: str, orgs: list[uuid.UUID]
) -> tuple[str, uuid.UUID]:
    email = f"{name}-{secrets.token_hex(4)}@example.test"
    return email, accounts.create_user(target, email, PASSWORD, orgs).id


@pytest.fixture
def world(target: DatabaseTarget, api: Callable[[str], Api]) -> World:
    tag = secrets.token_hex(3)
    org_a = accounts.create_org(target, f"Org A {tag}")
    org_b = accounts.create_org(target, f"Org B {tag}")
    alice, alice_id = make_user(target, "alice", [org_a])
    bob, bob_id = make_user(target, "bob", [org_b])
    carol, carol_id = make_user(target, "carol", [])
    made = World(
        target,
        org_a,
        org_b,
        alice,
        bob,
        carol,
        alice_id,
        bob_id,
        carol_id,
        add_customer(target, org_a, "CA1"),
        add_customer(target, org_a, "CA2"),
        add_customer(target, org_b, "CB1"),
    )
    client = api("production")
    made.cookies = {
        who: client.login(getattr(made, who)) for who in ("alice", "bob", "carol")
    }
    return made
