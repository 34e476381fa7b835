"""The documented surface, fuzzed: schemathesis against the app's /openapi.json.

Every operation the description lists gets generated calls, valid and invalid (and,
for the routes of one customer, valid calls on a customer that exists), sent
in-process to an app built for production, each with the cookie of a live session
of a user whose org has customers. A 5xx fails the test, and so does any answer
whose status, content type, headers or body the description does not promise.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from orgsafe.config import Settings
from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy import accounts
from orgsafe.tenancy.sessions import new_token, token_hash
from orgsafe.web import create_app
from tests.plugins.service import COOKIE, PASSWORD

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
ONE_CUSTOMER = "/api/customers/{id}"
OPERATIONS = [
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/password"),
    ("POST", "/api/session/org"),
    ("GET", "/api/debug/whoami"),
    ("GET", "/api/customers"),
    ("POST", "/api/customers"),
    ("GET", ONE_CUSTOMER),
    ("PATCH", ONE_CUSTOMER),
    ("DELETE", ONE_CUSTOMER),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]
# Operations with a body or a constrained query: the ones invalid input can reach.
WITH_INPUT = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/password"),
    ("POST", "/api/session/org"),
    ("GET", "/api/customers"),
    ("POST", "/api/customers"),
    ("PATCH", ONE_CUSTOMER),
}
# Each of these hashes or verifies a password (argon2, a tenth of a second).
HASHING = {"/api/auth/login", "/api/auth/password"}


def fuzzed(path: str) -> settings:
    return settings(
        max_examples=8 if path in HASHING else 20,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@dataclass(frozen=True)
class Member:
    """A user of an org with customers; `kept` is restored before every call."""

    admin: psycopg.Connection[tuple[Any, ...]]
    user_id: uuid.UUID
    org_id: uuid.UUID
    kept: uuid.UUID

    def new_session(self) -> str:
        """A live session stored as login stores one; each call gets its own."""
        token = new_token()
        self.admin.execute(
            "INSERT INTO sessions (token_hash, user_id, org_id, expires_at)"
            " VALUES (%s, %s, %s, now() + interval '1 hour')",
            (token_hash(token), self.user_id, self.org_id),
        )
        return token

    def restore_kept(self) -> None:
        self.admin.execute(
            "INSERT INTO customers (id, org_id, name) VALUES (%s, %s, 'Kept')"
            " ON CONFLICT (id) DO NOTHING",
            (self.kept, self.org_id),
        )


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Hypothesis caches what it learns on disk; that belongs in a temporary folder.
    home = tmp_path_factory.mktemp("hypothesis")
    set_hypothesis_home_dir(home)
    yield home
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def member(target: DatabaseTarget) -> Iterator[Member]:
    tag = secrets.token_hex(3)
    org = accounts.create_org(target, f"Described {tag}")
    user = accounts.create_user(target, f"fuzz-{tag}@example.test", PASSWORD, [org])
    with connect(target.admin_url, autocommit=True) as admin:
        for n in range(3):
            admin.execute(
                "INSERT INTO customers (org_id, name, email) VALUES (%s, %s, %s)",
                (org, f"Customer {n}", f"c{n}@example.test"),
            )
        yield Member(admin, user.id, org, uuid.uuid4())


@pytest.fixture(scope="module", autouse=True)
def login_throttle_kept(target: DatabaseTarget) -> Iterator[None]:
    # Fuzzed logins fail from the test client's address, which every test shares:
    # the throttle's rows go back to what they were once this module is done.
    with connect(target.admin_url, autocommit=True) as admin:
        before = admin.execute("SELECT * FROM login_throttle").fetchall()
        yield
        with admin.transaction():
            admin.execute("DELETE FROM login_throttle")
            for row in before:
                marks = ", ".join(["%s"] * len(row))
                admin.execute(f"INSERT INTO login_throttle VALUES ({marks})", row)


@pytest.fixture
def described(target: DatabaseTarget) -> Iterator[Any]:
    # A fresh app per test: its lifespan (the connection pool) ends with the test.
    app = create_app(Settings(env="production", database_url=target.owner_url), target)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()


def test_every_documented_operation_is_fuzzed(described: Any) -> None:
    listed = {
        (result.ok().method.upper(), result.ok().path)
        for result in described.get_all_operations()
    }
    assert listed == set(OPERATIONS)


def variants() -> list[Any]:
    """Valid and invalid calls; for one customer's routes, also on the kept one."""
    made = []
    for method, path in OPERATIONS:
        modes = [GenerationMode.POSITIVE]
        if (method, path) in WITH_INPUT:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            made.append(
                pytest.param(method, path, mode, False, id=f"{method} {path} {mode}")
            )
        if path == ONE_CUSTOMER:
            made.append(
                pytest.param(
                    method,
                    path,
                    GenerationMode.POSITIVE,
                    True,
                    id=f"{method} {path} kept",
                )
            )
    return made


@pytest.mark.parametrize(("method", "path", "mode", "on_kept"), variants())
def test_every_documented_operation_answers_as_documented(
    described: Any,
    member: Member,
    method: str,
    path: str,
    mode: GenerationMode,
    on_kept: bool,
) -> None:
    fixed = {"id": str(member.kept)} if on_kept else None
    operation = described[path][method]

    @fuzzed(path)
    @given(case=operation.as_strategy(mode, path_parameters=fixed))
    def answers_as_documented(case: Any) -> None:
        member.restore_kept()
        cookie = f"{COOKIE}={member.new_session()}"
        case.call_and_validate(headers={"Cookie": cookie}, checks=CHECKS)

    answers_as_documented()


# PostgreSQL text cannot hold a NUL character: the service must refuse it as
# invalid input before it reaches the database (the fuzzing above found it once
# answering 500).
NUL_NAME = "nul\x00name"


@pytest.mark.parametrize(
    "body", [{"name": NUL_NAME}, {"name": "ok", "email": "a\x00b@example.test"}]
)
def test_a_nul_character_in_a_new_customer_is_invalid_input(
    world: Any, api: Any, body: dict[str, str]
) -> None:
    made = api("production").call(
        "POST", "/api/customers", world.cookies["alice"], json=body
    )
    assert made.status_code == 400, made.text
    assert set(made.json()) == {"error"}


def test_a_nul_character_in_a_customer_update_is_invalid_input(
    world: Any, api: Any
) -> None:
    path = f"/api/customers/{world.ca1}"
    patched = api("production").call(
        "PATCH", path, world.cookies["alice"], json={"name": NUL_NAME}
    )
    assert patched.status_code == 400, patched.text
    assert world.sql("SELECT name FROM customers WHERE id = %s", (world.ca1,)) == [
        ("CA1",)
    ]


def test_a_nul_character_in_a_login_email_is_refused_like_any_bad_login(
    api: Any,
) -> None:
    body = {"email": "a\x00b@example.test", "password": "not the password"}
    answer = api("production").call("POST", "/api/auth/login", json=body)
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": "Invalid email or password"}
