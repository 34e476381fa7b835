"""Sessions and requests: password changes, cross-site requests, throttling, limits."""

from __future__ import annotations

import statistics
import time

from structlog.testing import capture_logs

from tests.plugins.service import PASSWORD, custom_api, session_cookie

NEW_PASSWORD = "a brand new passphrase"


def change(client, cookie, current=PASSWORD, new=NEW_PASSWORD):
    return client.call(
        "POST",
        "/api/auth/password",
        cookie,
        json={"currentPassword": current, "newPassword": new},
    )


def test_password_change_ends_every_other_session_and_rotates_this_one(world, api):
    client = api("production")
    other = client.login(world.alice)
    changed = change(client, world.cookies["alice"])
    assert changed.status_code == 204
    fresh = session_cookie(changed)
    assert client.call("GET", "/api/customers", other).status_code == 401
    assert (
        client.call("GET", "/api/customers", world.cookies["alice"]).status_code == 401
    )
    assert client.call("GET", "/api/customers", fresh).status_code == 200
    assert world.sql(
        "SELECT count(*) FROM sessions WHERE user_id = %s", (world.alice_id,)
    ) == [(1,)]
    old = client.call(
        "POST", "/api/auth/login", json={"email": world.alice, "password": PASSWORD}
    )
    assert old.status_code == 401
    assert client.login(world.alice, NEW_PASSWORD)
    # Bob's sessions are none of alice's business.
    assert client.call("GET", "/api/customers", world.cookies["bob"]).status_code == 200


def test_password_change_needs_the_current_password_and_a_long_enough_new_one(
    world, api
):
    client = api("production")
    wrong = change(client, world.cookies["alice"], current="not it")
    short = change(client, world.cookies["alice"], new="short")
    assert (wrong.status_code, short.status_code) == (403, 400)
    assert short.json() == {
        "error": "newPassword: password too short: at least 8 characters"
    }
    assert (
        client.call("GET", "/api/customers", world.cookies["alice"]).status_code == 200
    )
    assert change(client, None).status_code == 401


def test_cross_site_state_changes_are_refused_and_logged(world, api):
    client = api("production")
    cookie = world.cookies["alice"]
    body = {"name": "forged"}
    with capture_logs() as logs:
        by_origin = client.call(
            "POST",
            "/api/customers",
            cookie,
            json=body,
            headers={"Origin": "https://evil.example"},
        )
        by_fetch = client.call(
            "POST",
            "/api/customers",
            cookie,
            json=body,
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        null_origin = client.call(
            "DELETE", f"/api/customers/{world.ca1}", cookie, headers={"Origin": "null"}
        )
    for refused in (by_origin, by_fetch, null_origin):
        assert refused.status_code == 403
        assert refused.json() == {"error": "Cross-site request refused"}
    reasons = [line["reason"] for line in logs if line["event"] == "request_denied"]
    assert reasons == ["cross_site"] * 3
    assert world.sql("SELECT count(*) FROM customers WHERE name = 'forged'") == [(0,)]
    assert world.sql("SELECT count(*) FROM customers WHERE id = %s", (world.ca1,)) == [
        (1,)
    ]


def test_same_origin_and_non_browser_requests_pass(world, api):
    client = api("production")
    cookie = world.cookies["alice"]
    for headers in (
        {"Origin": "https://testserver"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {},
    ):
        made = client.call(
            "POST", "/api/customers", cookie, json={"name": "fine"}, headers=headers
        )
        assert made.status_code == 201, headers
    # Reads are never refused for their origin.
    read = client.call(
        "GET", "/api/customers", cookie, headers={"Origin": "https://evil.example"}
    )
    assert read.status_code == 200


def test_allowed_origins_are_settable(world, target):
    with custom_api(target, allowed_origins="https://app.example.com, ") as client:
        cookie = client.login(world.bob)
        ok = client.call(
            "POST",
            "/api/customers",
            cookie,
            json={"name": "from the app"},
            headers={"Origin": "https://app.example.com"},
        )
        other = client.call(
            "POST",
            "/api/customers",
            cookie,
            json={"name": "from elsewhere"},
            headers={"Origin": "https://other.example.com"},
        )
    assert (ok.status_code, other.status_code) == (201, 403)


def test_repeated_failures_on_an_account_answer_429_with_retry_after(world, target):
    with custom_api(target, login_account_failures=3) as client:
        for _ in range(3):
            failed = client.call(
                "POST",
                "/api/auth/login",
                json={"email": world.bob, "password": "nope!"},
            )
            assert failed.status_code == 401
        blocked = client.call(
            "POST", "/api/auth/login", json={"email": world.bob, "password": PASSWORD}
        )
    assert blocked.status_code == 429
    assert blocked.json() == {"error": "Too many login attempts, try again later"}
    assert 1 <= int(blocked.headers["retry-after"]) <= 300


def test_an_unknown_email_is_throttled_exactly_like_a_known_one(target):
    with custom_api(target, login_account_failures=2) as client:
        answers = [
            client.call(
                "POST",
                "/api/auth/login",
                json={"email": "ghost@example.test", "password": "whatever1"},
            ).status_code
            for _ in range(3)
        ]
    assert answers == [401, 401, 429]


def test_one_address_failing_on_many_accounts_is_throttled(world, target):
    emails = [f"nobody{n}@example.test" for n in range(4)]
    with custom_api(
        target, login_address_failures=4, login_account_failures=50
    ) as client:
        for email in emails:
            client.call(
                "POST", "/api/auth/login", json={"email": email, "password": "x"}
            )
        blocked = client.call(
            "POST", "/api/auth/login", json={"email": world.alice, "password": PASSWORD}
        )
    assert blocked.status_code == 429
    world.sql("DELETE FROM login_throttle WHERE key LIKE 'address:%%'")


def test_a_successful_login_clears_the_accounts_failures(world, target):
    with custom_api(target, login_account_failures=3) as client:
        for _ in range(2):
            client.call(
                "POST", "/api/auth/login", json={"email": world.bob, "password": "x"}
            )
        assert client.login(world.bob)
        for _ in range(2):
            client.call(
                "POST", "/api/auth/login", json={"email": world.bob, "password": "x"}
            )
        assert client.login(world.bob)


def test_unknown_email_and_wrong_password_take_about_the_same_time(world, api):
    client = api("production")

    def timed(email: str) -> float:
        started = time.perf_counter()
        client.call(
            "POST", "/api/auth/login", json={"email": email, "password": "bad one"}
        )
        return time.perf_counter() - started

    wrong = statistics.median(timed(world.carol) for _ in range(3))
    unknown = statistics.median(timed("nobody-at-all@example.test") for _ in range(3))
    # Without the decoy hash the unknown email would answer tens of times faster.
    assert 0.5 < unknown / wrong < 2.0
    world.sql("DELETE FROM login_throttle")


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not(
    world, target
):
    with custom_api(target, max_body_bytes=2048) as client:
        cookie = client.login(world.alice)
        declared = client.call(
            "POST", "/api/customers", cookie, json={"name": "x" * 5000}
        )

        def chunks():
            yield b'{"name": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        streamed = client.call(
            "POST",
            "/api/customers",
            cookie,
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
    for refused in (declared, streamed):
        assert refused.status_code == 413
        assert refused.json() == {"error": "Request body too large"}
    assert world.sql(
        "SELECT count(*) FROM customers WHERE org_id = %s", (world.org_a,)
    ) == [(2,)]


def test_parallel_guesses_cannot_slip_past_the_account_limit(world, target):
    from concurrent.futures import ThreadPoolExecutor

    with custom_api(target, login_account_failures=3) as client:

        def guess(n: int) -> int:
            body = {"email": world.bob, "password": f"guess number {n}"}
            return client.call("POST", "/api/auth/login", json=body).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(guess, range(12)))
    assert answers.count(401) == 3
    assert answers.count(429) == 9
    world.sql("DELETE FROM login_throttle")


def test_guessing_the_current_password_is_throttled_like_a_login(world, target):
    with custom_api(target, login_account_failures=2) as client:
        cookie = client.login(world.alice)
        answers = [
            change(client, cookie, current=f"wrong {n}").status_code for n in range(3)
        ]
        right = change(client, cookie)
    assert answers == [403, 403, 429]
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) >= 1
    world.sql("DELETE FROM login_throttle")


def test_a_body_cut_short_by_the_client_never_reaches_a_route(world, api):
    client = api("production")
    whole = b'{"name": "Cut short"}'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/api/customers",
        "raw_path": b"/api/customers",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            # More than arrives: the client hangs up after a valid-looking prefix.
            (b"content-length", str(len(whole) + 50).encode()),
            (b"cookie", f"orgsafe_session={world.cookies['alice']}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    arriving = [
        {"type": "http.request", "body": whole, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = []

    async def receive():
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def request():
        await client.client.app(scope, receive, send)

    with capture_logs() as logs:
        client.client.portal.call(request)

    assert sent == []
    assert not [line for line in logs if line["event"] == "request_denied"]
    assert world.sql("SELECT count(*) FROM customers WHERE name = 'Cut short'") == [
        (0,)
    ]
    metrics = client.metrics().text
    assert 'method="POST",route="unmatched",status="499"' in metrics
