"""Membership revoked (and session org cleared) while the guard waits on the session.

A transaction of the admin's locks alice's session row; her request, whose
last-seen time is due for a refresh, blocks in the guard's UPDATE. The admin then
revokes her membership in the session's org (and, in one variant, clears the
session's org as an org delete would) and commits. The lean path and the full
path alone must answer alike: org B (her default), never org A.
"""

from __future__ import annotations

import threading

import pytest

from orgsafe.storage import connect
from orgsafe.tenancy import sessions
from tests.plugins.database import wait_for_lock_wait


def race(world, client, statement: str, clear_org: bool) -> tuple[int, set[str]]:
    a = world.alice_id
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)", (a, world.org_b)
    )
    world.sql("UPDATE users SET default_org_id = %s WHERE id = %s", (world.org_b, a))
    world.sql(
        "UPDATE sessions SET org_id = %s, last_seen_at = now() - interval"
        " '2 minutes' WHERE user_id = %s",
        (world.org_a, a),
    )
    got: dict = {}
    with connect(world.target.admin_url) as conn:
        conn.execute("SELECT 1 FROM sessions WHERE user_id = %s FOR UPDATE", (a,))

        def call() -> None:
            got["r"] = client.call("GET", "/api/customers", world.cookies["alice"])

        thread = threading.Thread(target=call)
        thread.start()
        wait_for_lock_wait(world.target.admin_url, statement)
        conn.execute(
            "DELETE FROM memberships WHERE user_id = %s AND org_id = %s",
            (a, world.org_a),
        )
        if clear_org:
            conn.execute("UPDATE sessions SET org_id = NULL WHERE user_id = %s", (a,))
        conn.commit()
        thread.join(10)
    response = got["r"]
    names = (
        {i["name"] for i in response.json()["items"]}
        if response.status_code == 200
        else set()
    )
    return response.status_code, names


@pytest.mark.parametrize("clear_org", [False, True])
def test_lean_path_under_revocation(world, api, clear_org):
    assert race(world, api("production"), "SELECT * FROM guard_settle", clear_org) == (
        200,
        {"CB1"},
    )


@pytest.mark.parametrize("clear_org", [False, True])
def test_full_path_under_revocation(world, api, monkeypatch, clear_org):
    async def no_settle(*args, **kwargs):
        return None

    monkeypatch.setattr(sessions, "settle", no_settle)
    assert race(world, api("production"), "SELECT * FROM guard_lookup", clear_org) == (
        200,
        {"CB1"},
    )
