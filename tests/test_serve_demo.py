"""The README's first command, as a newcomer runs it: `orgsafe serve --demo`.

A real process on the embedded server in an empty data folder, spoken to over
loopback HTTP exactly as the README's curl examples do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.cookies import SimpleCookie

import psycopg
import pytest

ALICE = (
    "alice@example.test",
    "alice-demo-password",
    "11111111-1111-1111-1111-111111111111",
)
BOB = ("bob@example.test", "bob-demo-password", "22222222-2222-2222-2222-222222222222")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    base: str,
    method: str,
    path: str,
    body: dict | None = None,
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, str | None]:
    request = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body else None
    )
    request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", f"orgsafe_session={cookie}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, set_cookie = (
                response.status,
                response.read(),
                response.headers.get("Set-Cookie"),
            )
    except urllib.error.HTTPError as error:
        status, raw, set_cookie = error.code, error.read(), None
    token = SimpleCookie(set_cookie)["orgsafe_session"].value if set_cookie else None
    return status, json.loads(raw) if raw else {}, token


def start_serve(data_dir, log_dir) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("ORGSAFE_")
    }
    env["ORGSAFE_DATA_DIR"] = str(data_dir)
    log_dir.mkdir(exist_ok=True)
    with (
        open(log_dir / f"{port}.out", "w") as out,
        open(log_dir / f"{port}.err", "w") as err,
    ):
        process = subprocess.Popen(
            [sys.executable, "-m", "orgsafe", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"serve exited: {(log_dir / f'{port}.err').read_text()}"
            )
        try:
            if call(base, "GET", "/readyz")[0] == 200:
                return base, process
        except OSError:
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError("serve never became ready")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@pytest.fixture
def demo_server(tmp_path):
    base, process = start_serve(tmp_path / "data", tmp_path / "logs")
    yield base, process
    stop(process)


def test_demo_users_see_their_own_org_and_a_foreign_header_changes_nothing(demo_server):
    base, _ = demo_server
    for email, password, org in (ALICE, BOB):
        other = BOB[2] if org == ALICE[2] else ALICE[2]
        status, body, cookie = call(
            base, "POST", "/api/auth/login", {"email": email, "password": password}
        )
        assert status == 200 and body["orgId"] == org and cookie
        status, who, _ = call(base, "GET", "/api/debug/whoami", cookie=cookie)
        assert (who["effectiveOrgId"], who["orgSource"], who["environment"]) == (
            org,
            "session",
            "production",
        )
        status, page, _ = call(base, "GET", "/api/customers", cookie=cookie)
        assert (
            status == 200
            and page["items"]
            and {c["orgId"] for c in page["items"]} == {org}
        )
        status, foreign, _ = call(
            base, "GET", "/api/customers", cookie=cookie, headers={"X-Org-Id": other}
        )
        assert foreign == page
        status, who, _ = call(
            base, "GET", "/api/debug/whoami", cookie=cookie, headers={"X-Org-Id": other}
        )
        assert (who["effectiveOrgId"], who["headerOrgId"], who["headerIgnored"]) == (
            org,
            other,
            True,
        )


def test_demo_is_idempotent_and_sigterm_stops_the_service(demo_server, tmp_path):
    base, process = demo_server
    first = call(
        base, "POST", "/api/auth/login", {"email": ALICE[0], "password": ALICE[1]}
    )[2]
    count = len(call(base, "GET", "/api/customers", cookie=first)[1]["items"])
    assert stop(process) == 0
    printed = "".join(path.read_text() for path in (tmp_path / "logs").glob("*.out"))
    assert "alice@example.test" in printed and "bob@example.test" in printed
    # A second start on the same data folder neither duplicates nor fails.
    again, second = start_serve(tmp_path / "data", tmp_path / "logs")
    try:
        cookie = call(
            again, "POST", "/api/auth/login", {"email": ALICE[0], "password": ALICE[1]}
        )[2]
        assert (
            len(call(again, "GET", "/api/customers", cookie=cookie)[1]["items"])
            == count
        )
    finally:
        assert stop(second) == 0


def test_admin_commands_share_the_running_servers_database(demo_server, tmp_path):
    base, process = demo_server
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("ORGSAFE_")
    }
    env["ORGSAFE_DATA_DIR"] = str(tmp_path / "data")

    def orgsafe(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "orgsafe", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    org = orgsafe("org", "create", "Made while serving")
    orgsafe(
        "user", "create", "erin@example.test", "--org", org, stdin="erin password\n"
    )
    # The commands attached to the running embedded server and left it running.
    assert process.poll() is None
    status, body, cookie = call(
        base,
        "POST",
        "/api/auth/login",
        {"email": "erin@example.test", "password": "erin password"},
    )
    assert (status, body["orgId"]) == (200, org)
    assert call(base, "GET", "/api/customers", cookie=cookie)[1]["items"] == []
    assert "schema at revision" in orgsafe("db", "upgrade")


def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(tmp_path):
    base, process = start_serve(tmp_path / "data", tmp_path / "logs")
    try:
        cookie = call(
            base, "POST", "/api/auth/login", {"email": ALICE[0], "password": ALICE[1]}
        )[2]
        customer = call(base, "GET", "/api/customers", cookie=cookie)[1]["items"][0][
            "id"
        ]
        admin = f"host={tmp_path / 'data' / 'pgdata'} user=postgres dbname=orgsafe"
        holder = psycopg.connect(admin)
        holder.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer,))
        answer: dict[str, object] = {}
        patch = threading.Thread(
            target=lambda: answer.update(
                result=call(
                    base,
                    "PATCH",
                    f"/api/customers/{customer}",
                    {"name": "finished"},
                    cookie=cookie,
                )
            )
        )
        patch.start()
        with psycopg.connect(admin, autocommit=True) as watcher:
            for _ in range(200):
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock'"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):
            call(base, "GET", "/healthz")
        holder.rollback()
        holder.close()
        patch.join(timeout=20)
        assert answer["result"][0] == 200
        assert answer["result"][1]["name"] == "finished"
        assert process.wait(timeout=30) == 0
    finally:
        stop(process)
