"""The runbook through PgBouncer in transaction mode: limits hold, none leak."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import conninfo

from orgsafe.storage import DatabaseTarget
from tests.integrity.conftest import ORG_A, ORG_X, Runner, execute, rows, value

if TYPE_CHECKING:
    from tests.plugins.pgbouncer import Bouncer

pytest_plugins = ["tests.plugins.pgbouncer"]

SCHEMA = "legacy_pooled"
REF = f"{SCHEMA}.customers.org_id={SCHEMA}.orgs.id"


@pytest.fixture
def pooled_legacy(target: DatabaseTarget) -> Iterator[str]:
    """A legacy schema inside the shared service database, removed afterwards."""
    execute(
        target.admin_url,
        f"CREATE SCHEMA {SCHEMA}",
        f"CREATE TABLE {SCHEMA}.orgs (id uuid PRIMARY KEY)",
        f"CREATE TABLE {SCHEMA}.customers (id int PRIMARY KEY, org_id text)",
        f"INSERT INTO {SCHEMA}.orgs VALUES ('{ORG_A}')",
        f"INSERT INTO {SCHEMA}.customers SELECT g, '{ORG_A}' "
        "FROM generate_series(1, 40) g",
        f"INSERT INTO {SCHEMA}.customers VALUES (41, '{ORG_X}'), (42, 'legacy-42'), "
        f"(43, ''), (44, ' {ORG_A.upper()} ')",
    )
    yield target.admin_url
    execute(
        target.admin_url,
        f"DROP SCHEMA {SCHEMA} CASCADE",
        "DROP SCHEMA IF EXISTS orgsafe_integrity CASCADE",
    )


def test_run_through_a_transaction_pooler_finishes_and_leaks_no_setting(
    pooled_legacy: str,
    pgbouncer: Bouncer,
    orgsafe: Runner,
) -> None:
    user = str(conninfo.conninfo_to_dict(pooled_legacy).get("user") or "postgres")
    url = pgbouncer.url(user)

    outcome = orgsafe(
        "run",
        "--database-url",
        url,
        "--ref",
        REF,
        "--yes",
        "--mode",
        "online",
        "--batch-size",
        "7",
    )

    assert outcome.code == 0, outcome.err
    assert (
        value(
            pooled_legacy,
            "SELECT convalidated FROM pg_constraint WHERE conrelid = "
            f"'{SCHEMA}.customers'::regclass AND contype = 'f'",
        )
        is True
    )
    assert rows(
        pooled_legacy,
        f"SELECT id, org_id::text FROM {SCHEMA}.customers WHERE id > 40 ORDER BY id",
    ) == [(41, None), (42, None), (43, None), (44, ORG_A)]
    # Every server session behind the pooler still has the server's defaults.
    for _ in range(8):
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute(
                "SELECT current_setting('lock_timeout'), "
                "current_setting('statement_timeout')"
            ).fetchone()
            assert row == ("0", "0")
