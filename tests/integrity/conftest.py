"""Fixtures for the integrity runbook: legacy databases and a CLI runner.

The legacy database is the one teams bring: orgs with a uuid key and customers
whose org_id grew without a foreign key, as text (`legacy_url`) or already as
uuid (`converted_url`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from orgsafe.cli import main
from orgsafe.storage import DatabaseTarget, upgrade

ORG_A = "11111111-1111-1111-1111-111111111111"
ORG_B = "22222222-2222-2222-2222-222222222222"
ORG_X = "99999999-9999-9999-9999-999999999999"

LEGACY = f"""
CREATE TABLE orgs (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE customers (id integer PRIMARY KEY, org_id text, name text NOT NULL);
INSERT INTO orgs VALUES ('{ORG_A}', 'Org A'), ('{ORG_B}', 'Org B');
INSERT INTO customers VALUES
  (1, '{ORG_A}', 'A-1'), (2, '{ORG_A}', 'A-2'), (3, '{ORG_B}', 'B-1');
"""
CONVERT = (
    "ALTER TABLE customers ALTER COLUMN org_id TYPE uuid USING NULLIF(org_id, '')::uuid"
)
REF = "customers.org_id=orgs.id"


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def value(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    return rows(url, query, params)[0][0]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def report(self) -> dict[str, Any]:
        return dict(json.loads(self.out.strip().splitlines()[-1]))


Runner = Callable[..., Outcome]


@pytest.fixture
def orgsafe(capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run `orgsafe integrity ...` in this process; returns code and output."""

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        try:
            main(["integrity", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def legacy_url(scratch_url: str) -> str:
    """L0: customers.org_id is text, no foreign key, three good rows."""
    execute(scratch_url, LEGACY)
    return scratch_url


@pytest.fixture
def converted_url(legacy_url: str) -> str:
    """L1: L0 with org_id already uuid, still without a foreign key."""
    execute(legacy_url, CONVERT)
    return legacy_url


@pytest.fixture
def service_url(scratch_url: str) -> Iterator[str]:
    """A database migrated to the service's own schema, with its own keys."""
    app_role = f"orgsafe_app_{secrets.token_hex(3)}"
    made = DatabaseTarget(
        admin_url=scratch_url,
        owner_url=scratch_url,
        app_url=scratch_url,
        app_role=app_role,
        embedded=False,
    )
    upgrade(made, None)
    yield scratch_url
    execute(scratch_url, f"DROP OWNED BY {app_role}", f"DROP ROLE {app_role}")
