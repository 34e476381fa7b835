"""GET /metrics: requests by route and status, denials by reason, pool, latency.

The apps are shared by the whole session, so each test reads a counter before and
after what it provokes and checks the difference.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orgsafe.storage import DatabaseTarget
from tests.plugins.service import Api, World, custom_api

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Api) -> Samples:
    response = client.metrics()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, status: int, method: str = "GET") -> float:
    return value(
        samples,
        "orgsafe_http_requests_total",
        method=method,
        route=route,
        status=str(status),
    )


def denials(samples: Samples, status: int, reason: str) -> float:
    return value(
        samples, "orgsafe_guard_denials_total", status=str(status), reason=reason
    )


def test_requests_are_counted_by_route_template_never_by_path(
    api: Callable[[str], Api], world: World
) -> None:
    client = api("production")
    before = scrape(client)

    for customer in (world.ca1, world.ca2):
        response = client.call(
            "GET", f"/api/customers/{customer}", world.cookies["alice"]
        )
        assert response.status_code == 200
    client.call("GET", "/no/such/route/" + uuid.uuid4().hex)

    after = scrape(client)
    assert requests(after, "/api/customers/{id}", 200) == (
        requests(before, "/api/customers/{id}", 200) + 2
    )
    assert requests(after, "unmatched", 404) == requests(before, "unmatched", 404) + 1
    text = client.metrics().text
    assert str(world.ca1) not in text
    assert "/no/such/route" not in text


@pytest.mark.parametrize(
    ("env", "status", "reason", "who", "path"),
    [
        ("production", 401, "no_session", None, "/api/customers"),
        ("production", 401, "unknown_session", None, "/api/customers"),
        ("production", 404, "malformed_id", "alice", "/api/customers/not-a-uuid"),
        (
            "production",
            400,
            "bad_cursor",
            "alice",
            "/api/customers?cursor=bm90LWEtY3Vyc29y",
        ),
        ("test", 400, "header_malformed", "alice", "/api/customers"),
        ("test", 403, "header_not_member", "alice", "/api/customers"),
    ],
)
def test_guard_denials_are_counted_by_reason(
    api: Callable[[str], Api],
    world: World,
    env: str,
    status: int,
    reason: str,
    who: str | None,
    path: str,
) -> None:
    client = api(env)
    cookie = cookie_for(world, reason, who)
    org_header = header_for(world, reason)
    before = scrape(client)

    response = client.call("GET", path, cookie, headers=org_header)

    assert response.status_code == status, response.text
    after = scrape(client)
    assert denials(after, status, reason) == denials(before, status, reason) + 1


def cookie_for(world: World, reason: str, who: str | None) -> str | None:
    if reason == "unknown_session":
        return "x" * 43
    return world.cookies[who] if who else None


def header_for(world: World, reason: str) -> dict[str, str]:
    if reason == "header_malformed":
        return {"X-Org-Id": "not-a-uuid"}
    if reason == "header_not_member":
        return {"X-Org-Id": str(world.org_b)}
    return {}


def test_another_orgs_customer_is_a_counted_not_found(
    api: Callable[[str], Api], world: World
) -> None:
    client = api("production")
    before = scrape(client)

    response = client.call("GET", f"/api/customers/{world.cb1}", world.cookies["alice"])

    assert response.status_code == 404
    after = scrape(client)
    reason = "customer_not_found"
    assert denials(after, 404, reason) == denials(before, 404, reason) + 1


def test_latency_histogram_and_pool_usage(
    api: Callable[[str], Api], world: World
) -> None:
    client = api("production")
    count = "orgsafe_http_request_duration_seconds_count"
    before = scrape(client)

    assert (
        client.call("GET", "/api/customers", world.cookies["alice"]).status_code == 200
    )

    after = scrape(client)
    labels = {"method": "GET", "route": "/api/customers"}
    assert value(after, count, **labels) == value(before, count, **labels) + 1
    infinite = value(
        after, "orgsafe_http_request_duration_seconds_bucket", le="+Inf", **labels
    )
    assert infinite == value(after, count, **labels)
    pool = {"pool": "orgsafe-app"}
    assert value(after, "orgsafe_db_pool_max_connections", **pool) >= 1
    assert value(after, "orgsafe_db_pool_connections", **pool) >= 1
    requested = "orgsafe_db_pool_requests_total"
    assert value(after, requested, **pool) > value(before, requested, **pool)


def test_a_method_of_the_clients_own_invention_makes_no_series_of_its_own(
    api: Callable[[str], Api],
) -> None:
    client = api("production")
    invented = "X" + uuid.uuid4().hex[:8].upper()
    before = scrape(client)

    response = client.call(invented, "/api/customers")

    assert response.status_code == 405
    after = scrape(client)
    assert invented not in client.metrics().text
    assert requests(after, "/api/customers", 405, method="other") == (
        requests(before, "/api/customers", 405, method="other") + 1
    )


def test_scrapes_are_counted_under_their_own_route(api: Callable[[str], Api]) -> None:
    client = api("production")
    before = scrape(client)

    after = scrape(client)

    assert requests(after, "/metrics", 200) == requests(before, "/metrics", 200) + 1


TOKEN = "scrape-" + "x" * 20


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-of-some-length", f"bearer {TOKEN}", TOKEN, "Bearer "],
)
def test_without_the_bearer_token_metrics_are_refused(
    target: DatabaseTarget, authorization: str | None
) -> None:
    with custom_api(target, metrics_token=TOKEN) as client:
        headers = [("Authorization", authorization)] if authorization else []
        refused = client.call("GET", "/metrics", headers=headers)
        right = [("Authorization", f"Bearer {TOKEN}")]
        served = client.call("GET", "/metrics", headers=right)
    assert refused.status_code == 401
    assert refused.json() == {"error": "metrics need the bearer token"}
    assert refused.headers["www-authenticate"] == "Bearer"
    assert served.status_code == 200
    # The refusal itself is counted, under its reason.
    assert 'reason="metrics_token",status="401"' in served.text


def test_in_production_metrics_without_a_token_are_off(target: DatabaseTarget) -> None:
    with custom_api(target) as client:
        refused = client.call("GET", "/metrics")
    assert refused.status_code == 403
    assert refused.json() == {"error": "metrics are off: set ORGSAFE_METRICS_TOKEN"}


@pytest.mark.parametrize("env", ["development", "test"])
def test_outside_production_metrics_need_no_token(
    target: DatabaseTarget, env: str
) -> None:
    with custom_api(target, env=env) as client:
        served = client.call("GET", "/metrics")
    assert served.status_code == 200
    assert "orgsafe_http_requests_total" in served.text
