"""A customer route settles its org the lean way or the full way, with one outcome.

The lean lookup serves a live session whose org the user still holds; anything
else goes the full way. These tests pin the cases where the two part.
"""

from __future__ import annotations

from structlog.testing import capture_logs


def names(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


def denials(logs) -> list[dict]:
    return [line for line in logs if line["event"] == "request_denied"]


def test_a_session_without_an_org_is_served_the_users_default_org(world, api):
    client = api("production")
    world.sql("UPDATE sessions SET org_id = NULL WHERE user_id = %s", (world.alice_id,))
    listed = client.call("GET", "/api/customers", world.cookies["alice"])
    assert names(listed) == {"CA1", "CA2"}
    who = client.call("GET", "/api/debug/whoami", world.cookies["alice"]).json()
    assert (who["sessionOrgId"], who["orgSource"]) == (None, "user")


def test_a_denial_on_the_lean_path_logs_the_same_facts(world, api):
    client = api("production")
    with capture_logs() as logs:
        other = client.call(
            "GET",
            f"/api/customers/{world.cb1}",
            world.cookies["alice"],
            headers={"X-Org-Id": str(world.org_b)},
        )
    assert other.status_code == 404
    assert "CB1" not in other.text
    (denial,) = denials(logs)
    assert denial["reason"] == "customer_not_found"
    assert denial["user_id"] == str(world.alice_id)
    assert denial["session_org_id"] == str(world.org_a)
    assert denial["effective_org_id"] == str(world.org_a)
    # Reported, never read: production takes the org from the session.
    assert denial["header_org_id"] == str(world.org_b)


def test_an_unknown_token_is_refused_and_logged_as_such(world, api):
    client = api("production")
    with capture_logs() as logs:
        refused = client.call("GET", "/api/customers", "x" * 43)
    assert refused.status_code == 401
    assert refused.json() == {"error": "Not authenticated"}
    (denial,) = denials(logs)
    assert denial["reason"] == "unknown_session"
    assert denial["user_id"] is None


def test_an_org_left_while_another_is_held_serves_the_default_org(world, api):
    client = api("production")
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
        (world.alice_id, world.org_b),
    )
    world.sql(
        "UPDATE sessions SET org_id = %s WHERE user_id = %s",
        (world.org_b, world.alice_id),
    )
    assert names(client.call("GET", "/api/customers", world.cookies["alice"])) == {
        "CB1"
    }
    world.sql(
        "DELETE FROM memberships WHERE user_id = %s AND org_id = %s",
        (world.alice_id, world.org_b),
    )
    with capture_logs() as logs:
        gone = client.call("GET", f"/api/customers/{world.cb1}", world.cookies["alice"])
    assert gone.status_code == 404
    (denial,) = denials(logs)
    assert denial["session_org_id"] == str(world.org_b)
    assert denial["effective_org_id"] == str(world.org_a)
