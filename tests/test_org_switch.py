"""Switching the session's org: checked before anything is stored."""

from __future__ import annotations

import uuid

from structlog.testing import capture_logs

from tests.plugins.service import session_cookie

ORG_NEVER_CREATED = "99999999-9999-9999-9999-999999999999"


def stored_session_orgs(world) -> list:
    return [
        row[0]
        for row in world.sql(
            "SELECT org_id FROM sessions WHERE user_id = %s", (world.alice_id,)
        )
    ]


def test_switch_to_a_foreign_unknown_or_malformed_org_is_refused_and_changes_nothing(
    world, api
):
    client = api("production")
    before = stored_session_orgs(world)
    with capture_logs() as logs:
        foreign = client.call(
            "POST",
            "/api/session/org",
            world.cookies["alice"],
            json={"orgId": str(world.org_b)},
        )
        unknown = client.call(
            "POST",
            "/api/session/org",
            world.cookies["alice"],
            json={"orgId": ORG_NEVER_CREATED},
        )
        malformed = client.call(
            "POST", "/api/session/org", world.cookies["alice"], json={"orgId": "nope"}
        )
    assert (foreign.status_code, unknown.status_code, malformed.status_code) == (
        403,
        403,
        400,
    )
    # An org that does not exist answers exactly like one that is not yours.
    assert foreign.json() == unknown.json() == {"error": "Not a member of this org"}
    assert malformed.json() == {"error": "orgId: not a uuid"}
    assert stored_session_orgs(world) == before == [world.org_a]
    who = client.call("GET", "/api/debug/whoami", world.cookies["alice"]).json()
    assert who["effectiveOrgId"] == str(world.org_a)
    listed = client.call("GET", "/api/customers", world.cookies["alice"]).json()
    assert {item["name"] for item in listed["items"]} == {"CA1", "CA2"}
    denials = [line for line in logs if line["event"] == "request_denied"]
    assert [d["requested_org_id"] for d in denials] == [
        str(world.org_b),
        ORG_NEVER_CREATED,
        "nope",
    ]
    assert all(d["user_id"] == str(world.alice_id) for d in denials)
    assert all(d["session_org_id"] == str(world.org_a) for d in denials[:2])


def test_switch_to_a_member_org_rotates_the_session_and_revocation_undoes_it(
    world, api
):
    client = api("production")
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
        (world.alice_id, world.org_b),
    )
    switched = client.call(
        "POST",
        "/api/session/org",
        world.cookies["alice"],
        json={"orgId": str(world.org_b)},
    )
    assert switched.status_code == 200
    assert switched.json() == {"orgId": str(world.org_b)}
    cookie = session_cookie(switched)
    assert cookie != world.cookies["alice"]
    # The old cookie is dead; the new one sees org B.
    assert (
        client.call("GET", "/api/customers", world.cookies["alice"]).status_code == 401
    )
    listed = client.call("GET", "/api/customers", cookie).json()
    assert {item["name"] for item in listed["items"]} == {"CB1"}
    world.sql(
        "DELETE FROM memberships WHERE user_id = %s AND org_id = %s",
        (world.alice_id, world.org_b),
    )
    after = client.call("GET", "/api/customers", cookie)
    assert {item["name"] for item in after.json()["items"]} == {"CA1", "CA2"}
    who = client.call("GET", "/api/debug/whoami", cookie).json()
    assert (who["orgSource"], who["effectiveOrgId"]) == ("user", str(world.org_a))


def test_switch_keeps_the_absolute_expiry(world, api):
    client = api("production")
    (before,) = world.sql(
        "SELECT expires_at FROM sessions WHERE user_id = %s", (world.alice_id,)
    )
    switched = client.call(
        "POST",
        "/api/session/org",
        world.cookies["alice"],
        json={"orgId": str(world.org_a)},
    )
    assert switched.status_code == 200
    (after,) = world.sql(
        "SELECT expires_at FROM sessions WHERE user_id = %s", (world.alice_id,)
    )
    assert after == before


def test_switch_without_session_is_401_and_bad_bodies_are_400(world, api):
    client = api("production")
    assert (
        client.call(
            "POST", "/api/session/org", json={"orgId": str(uuid.uuid4())}
        ).status_code
        == 401
    )
    for body in ({}, {"orgId": 5}, {"org_id": str(world.org_a)}, []):
        response = client.call(
            "POST", "/api/session/org", world.cookies["alice"], json=body
        )
        assert response.status_code == 400, body
        assert set(response.json()) == {"error"}
