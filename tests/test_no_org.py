"""No org means no data: never "no filter"."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from orgsafe.tenancy.customers import CustomerStore


def test_user_without_any_org_gets_401_and_zero_rows(world, api):
    client = api("production")
    with capture_logs() as logs:
        listed = client.call("GET", "/api/customers", world.cookies["carol"])
    assert listed.status_code == 401
    assert listed.json() == {"error": "Not authenticated"}
    denial = [line for line in logs if line["event"] == "request_denied"][-1]
    assert (denial["status"], denial["reason"]) == (401, "no_org")
    assert denial["user_id"] == str(world.carol_id)
    assert denial["effective_org_id"] is None


def test_whoami_of_a_user_without_org_reports_no_org(world, api):
    who = api("production").call("GET", "/api/debug/whoami", world.cookies["carol"])
    assert who.status_code == 200
    body = who.json()
    assert (body["effectiveOrgId"], body["orgSource"], body["sessionOrgId"]) == (
        None,
        None,
        None,
    )


def test_session_whose_org_no_longer_applies_falls_to_401(world, api):
    client = api("production")
    switched = client.call(
        "POST",
        "/api/session/org",
        world.cookies["alice"],
        json={"orgId": str(world.org_a)},
    )
    assert switched.status_code == 200
    cookie = (
        switched.cookies.get("orgsafe_session")
        or switched.headers["set-cookie"].split("=", 1)[1].split(";")[0]
    )
    world.sql("DELETE FROM memberships WHERE user_id = %s", (world.alice_id,))
    world.sql("UPDATE users SET default_org_id = NULL WHERE id = %s", (world.alice_id,))
    listed = client.call("GET", "/api/customers", cookie)
    assert listed.status_code == 401
    assert listed.json() == {"error": "Not authenticated"}


def test_revoked_membership_takes_effect_on_the_next_request(world, api):
    client = api("production")
    assert (
        client.call("GET", "/api/customers", world.cookies["alice"]).status_code == 200
    )
    world.sql(
        "DELETE FROM memberships WHERE user_id = %s AND org_id = %s",
        (world.alice_id, world.org_a),
    )
    listed = client.call("GET", "/api/customers", world.cookies["alice"])
    assert listed.status_code == 401
    assert "CA1" not in listed.text


def test_customer_store_refuses_to_exist_without_an_org():
    with pytest.raises(ValueError, match="needs an org"):
        CustomerStore(object(), None)  # type: ignore[arg-type]


def test_anonymous_requests_get_401(api):
    client = api("production")
    for method, path in (
        ("GET", "/api/customers"),
        ("GET", "/api/debug/whoami"),
        ("POST", "/api/auth/logout"),
    ):
        response = client.call(method, path)
        assert response.status_code == 401, path
        assert response.json() == {"error": "Not authenticated"}
    forged = client.call("GET", "/api/customers", "forged-token-value")
    assert forged.status_code == 401
