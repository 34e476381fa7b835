"""A session keeps working after its last-seen time is refreshed."""

from __future__ import annotations

from collections.abc import Callable

from tests.plugins.service import Api, World


def test_a_session_idle_past_the_touch_interval_still_serves(
    api: Callable[[str], Api], world: World
) -> None:
    client = api("production")
    world.sql(
        "UPDATE sessions SET last_seen_at = now() - interval '2 minutes'"
        " WHERE user_id = %s",
        (world.alice_id,),
    )

    first = client.call("GET", "/api/customers", world.cookies["alice"])
    second = client.call("GET", "/api/customers", world.cookies["alice"])

    assert (first.status_code, second.status_code) == (200, 200)
    seen = world.sql(
        "SELECT last_seen_at > now() - interval '1 minute' FROM sessions"
        " WHERE user_id = %s",
        (world.alice_id,),
    )
    assert seen == [(True,)]
