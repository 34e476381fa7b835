"""Login, logout and the session cookie."""

from __future__ import annotations

from tests.plugins.service import PASSWORD, session_cookie


def test_login_sets_a_hardened_cookie_and_stores_only_its_hash(world, api):
    client = api("production")
    response = client.call(
        "POST", "/api/auth/login", json={"email": world.alice, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json() == {"userId": str(world.alice_id), "orgId": str(world.org_a)}
    header = response.headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=lax", "secure", "path=/", "max-age="):
        assert flag in header
    token = session_cookie(response)
    stored = [
        row[0]
        for row in world.sql(
            "SELECT token_hash FROM sessions WHERE user_id = %s", (world.alice_id,)
        )
    ]
    assert token not in stored
    assert all(len(value) == 64 for value in stored)


def test_cookie_is_not_secure_outside_production(world, api):
    response = api("development").call(
        "POST", "/api/auth/login", json={"email": world.alice, "password": PASSWORD}
    )
    assert "secure" not in response.headers["set-cookie"].lower()


def test_every_login_makes_a_new_session_and_ends_the_one_it_replaces(world, api):
    client = api("production")
    first = world.cookies["alice"]
    again = client.call(
        "POST",
        "/api/auth/login",
        first,
        json={"email": world.alice, "password": PASSWORD},
    )
    second = session_cookie(again)
    assert second != first
    assert client.call("GET", "/api/debug/whoami", first).status_code == 401
    assert client.call("GET", "/api/debug/whoami", second).status_code == 200


def test_email_is_matched_without_regard_to_case_or_spaces(world, api):
    response = api("production").call(
        "POST",
        "/api/auth/login",
        json={"email": f"  {world.alice.upper()} ", "password": PASSWORD},
    )
    assert response.status_code == 200


def test_unknown_email_and_wrong_password_answer_the_same(world, api):
    client = api("production")
    wrong = client.call(
        "POST",
        "/api/auth/login",
        json={"email": world.alice, "password": "wrong password"},
    )
    unknown = client.call(
        "POST",
        "/api/auth/login",
        json={"email": "nobody@example.test", "password": PASSWORD},
    )
    junk = client.call(
        "POST", "/api/auth/login", json={"email": "not an email", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == junk.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == junk.json()
        == {"error": "Invalid email or password"}
    )
    assert "set-cookie" not in wrong.headers


def test_malformed_login_bodies_are_400(api):
    client = api("production")
    for body in (
        {},
        {"email": "a@b.test"},
        {"email": 1, "password": 2},
        {"email": "", "password": "x"},
    ):
        response = client.call("POST", "/api/auth/login", json=body)
        assert response.status_code == 400, body
        assert set(response.json()) == {"error"}


def test_logout_ends_the_session_server_side_and_a_replayed_cookie_is_refused(
    world, api
):
    client = api("production")
    cookie = world.cookies["bob"]
    out = client.call("POST", "/api/auth/logout", cookie)
    assert out.status_code == 204
    assert (
        'orgsafe_session=""' in out.headers["set-cookie"]
        or "max-age=0" in out.headers["set-cookie"].lower()
    )
    assert world.sql(
        "SELECT count(*) FROM sessions WHERE user_id = %s", (world.bob_id,)
    ) == [(0,)]
    replay = client.call("GET", "/api/customers", cookie)
    assert replay.status_code == 401
    assert client.call("POST", "/api/auth/logout", cookie).status_code == 401


def test_an_expired_session_is_refused_and_removed(world, api):
    client = api("production")
    world.sql(
        "UPDATE sessions SET expires_at = now() - interval '1 second'"
        " WHERE user_id = %s",
        (world.bob_id,),
    )
    assert client.call("GET", "/api/customers", world.cookies["bob"]).status_code == 401
    assert world.sql(
        "SELECT count(*) FROM sessions WHERE user_id = %s", (world.bob_id,)
    ) == [(0,)]


def test_an_idle_session_is_refused(world, api):
    client = api("production")
    world.sql(
        "UPDATE sessions SET last_seen_at = now() - interval '2 days'"
        " WHERE user_id = %s",
        (world.bob_id,),
    )
    assert client.call("GET", "/api/customers", world.cookies["bob"]).status_code == 401
