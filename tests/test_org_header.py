"""The X-Org-Id header: never read for tenancy in production, checked outside it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from orgsafe.config import Environment, parse_environment


def names(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


@pytest.mark.parametrize("raw", [None, "", "production", "Prod", "staging", " dev "])
def test_unset_empty_or_unknown_environment_means_production(raw):
    assert parse_environment(raw) is Environment.production


@pytest.mark.parametrize("raw", ["development", "Development", "test"])
def test_only_named_environments_relax_production_rules(raw):
    assert parse_environment(raw) is not Environment.production


def test_production_ignores_a_header_naming_another_org(world, api):
    client = api("production")
    headers = {"X-Org-Id": str(world.org_b)}
    listed = client.call(
        "GET", "/api/customers", world.cookies["alice"], headers=headers
    )
    assert names(listed) == {"CA1", "CA2"}
    who = client.call(
        "GET", "/api/debug/whoami", world.cookies["alice"], headers=headers
    )
    assert who.json() == {
        "userId": str(world.alice_id),
        "sessionOrgId": str(world.org_a),
        "headerOrgId": str(world.org_b),
        "headerIgnored": True,
        "effectiveOrgId": str(world.org_a),
        "orgSource": "session",
        "environment": "production",
    }


def test_production_ignores_malformed_and_repeated_headers(world, api):
    client = api("production")
    for headers in (
        {"X-Org-Id": "not-a-uuid"},
        [("X-Org-Id", str(world.org_a)), ("X-Org-Id", str(world.org_b))],
    ):
        listed = client.call(
            "GET", "/api/customers", world.cookies["alice"], headers=headers
        )
        assert names(listed) == {"CA1", "CA2"}


def test_production_user_without_org_gets_no_help_from_a_header(world, api):
    client = api("production")
    headers = {"X-Org-Id": str(world.org_b)}
    listed = client.call(
        "GET", "/api/customers", world.cookies["carol"], headers=headers
    )
    assert listed.status_code == 401
    assert listed.json() == {"error": "Not authenticated"}


def test_development_refuses_a_header_for_an_org_the_user_does_not_hold(world, api):
    client = api("development")
    with capture_logs() as logs:
        listed = client.call(
            "GET",
            "/api/customers",
            world.cookies["alice"],
            headers={"X-Org-Id": str(world.org_b)},
        )
    assert listed.status_code == 403
    assert "error" in listed.json() and "CB1" not in listed.text
    denial = [line for line in logs if line["event"] == "request_denied"][-1]
    assert denial["status"] == 403
    assert denial["user_id"] == str(world.alice_id)
    assert denial["session_org_id"] == str(world.org_a)
    assert denial["header_org_id"] == str(world.org_b)
    assert denial["reason"] == "header_not_member"


def test_development_rejects_a_malformed_header_with_400(world, api):
    client = api("development")
    for value in (
        "not-a-uuid",
        "",
        "{11111111-1111-1111-1111-111111111111}",
        "1" * 500,
    ):
        listed = client.call(
            "GET", "/api/customers", world.cookies["alice"], headers={"X-Org-Id": value}
        )
        assert listed.status_code == 400, value
        assert listed.json() == {"error": "X-Org-Id header is not a uuid"}


def test_development_rejects_a_repeated_header_rather_than_picking_one(world, api):
    client = api("development")
    headers = [("X-Org-Id", str(world.org_a)), ("X-Org-Id", str(world.org_b))]
    listed = client.call(
        "GET", "/api/customers", world.cookies["alice"], headers=headers
    )
    assert listed.status_code == 400
    assert listed.json() == {"error": "X-Org-Id header given more than once"}


def test_development_honours_a_header_for_a_member_org_when_the_session_has_none(
    world, api
):
    client = api("development")
    # Carol joins org B, but her session (made when she had no org) names none.
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
        (world.carol_id, world.org_b),
    )
    headers = {"X-Org-Id": str(world.org_b)}
    listed = client.call(
        "GET", "/api/customers", world.cookies["carol"], headers=headers
    )
    assert names(listed) == {"CB1"}
    who = client.call(
        "GET", "/api/debug/whoami", world.cookies["carol"], headers=headers
    ).json()
    assert (who["orgSource"], who["effectiveOrgId"], who["headerIgnored"]) == (
        "header",
        str(world.org_b),
        False,
    )
    # The same header in production changes nothing: carol still has no org.
    production = api("production").call(
        "GET", "/api/customers", world.cookies["carol"], headers=headers
    )
    assert production.status_code == 401


def test_session_org_wins_over_a_member_header_outside_production(world, api):
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
        (world.alice_id, world.org_b),
    )
    client = api("development")
    who = client.call(
        "GET",
        "/api/debug/whoami",
        world.cookies["alice"],
        headers={"X-Org-Id": str(world.org_b)},
    ).json()
    assert (who["orgSource"], who["effectiveOrgId"], who["headerIgnored"]) == (
        "session",
        str(world.org_a),
        True,
    )
