"""Demo data for `orgsafe serve --demo`: two orgs with one user each.

Idempotent: existing orgs, users and customers are left as they are, so a second
start neither duplicates rows nor resets a password someone changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy.passwords import hash_password


@dataclass(frozen=True)
class DemoOrg:
    id: uuid.UUID
    name: str
    email: str
    password: str
    customers: tuple[str, ...]


DEMO_ORGS = (
    DemoOrg(
        uuid.UUID("11111111-1111-1111-1111-111111111111"),
        "Acme Demo",
        "alice@example.test",
        "alice-demo-password",
        ("Acme customer one", "Acme customer two"),
    ),
    DemoOrg(
        uuid.UUID("22222222-2222-2222-2222-222222222222"),
        "Globex Demo",
        "bob@example.test",
        "bob-demo-password",
        ("Globex customer one",),
    ),
)


def seed_demo(target: DatabaseTarget, base_url: str) -> Iterator[str]:
    """Create the demo data; yields the lines that tell a person how to log in."""
    with connect(target.owner_url) as conn:
        for org in DEMO_ORGS:
            _seed_org(conn, org)
    yield "demo data ready (passwords are public: never use --demo in production):"
    for org in DEMO_ORGS:
        yield f"  org {org.name} {org.id}: {org.email} / {org.password}"
    yield (
        f"  curl -c jar.txt -H 'Content-Type: application/json' "
        f'-d \'{{"email": "{DEMO_ORGS[0].email}", '
        f'"password": "{DEMO_ORGS[0].password}"}}\' {base_url}/api/auth/login'
    )


def _seed_org(conn: psycopg.Connection[tuple[object, ...]], org: DemoOrg) -> None:
    conn.execute(
        "INSERT INTO orgs (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
        (org.id, org.name),
    )
    user = conn.execute(
        "SELECT id FROM users WHERE lower(email) = %s", (org.email,)
    ).fetchone()
    if user is None:
        user = conn.execute(
            "INSERT INTO users (email, password_hash, default_org_id)"
            " VALUES (%s, %s, %s) RETURNING id",
            (org.email, hash_password(org.password), org.id),
        ).fetchone()
    assert user is not None
    conn.execute("SELECT set_config('app.user_id', %s, true)", (str(user[0]),))
    conn.execute(
        "INSERT INTO memberships (user_id, org_id, role) VALUES (%s, %s, 'owner')"
        " ON CONFLICT DO NOTHING",
        (user[0], org.id),
    )
    conn.execute("SELECT set_config('app.org_id', %s, true)", (str(org.id),))
    if conn.execute("SELECT 1 FROM customers WHERE org_id = %s", (org.id,)).fetchone():
        return
    for name in org.customers:
        conn.execute(
            "INSERT INTO customers (org_id, name) VALUES (%s, %s)", (org.id, name)
        )
