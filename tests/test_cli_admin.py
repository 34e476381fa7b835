"""The admin commands, run as a person would: a real process, a real database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from orgsafe.storage import connect


def orgsafe(target, *args: str, stdin: str = "", env: dict[str, str] | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ORGSAFE_")}
    environment |= {
        "DATABASE_URL": target.owner_url,
        "ORGSAFE_APP_ROLE": target.app_role,
        "ORGSAFE_APP_DATABASE_URL": target.app_url,
    }
    environment |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "orgsafe", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_org_create_prints_the_new_id(target):
    done = orgsafe(target, "org", "create", "Initech")
    assert done.returncode == 0, done.stderr
    # Output for people only: no log lines unless something went wrong.
    assert done.stderr == ""
    org_id = uuid.UUID(done.stdout.strip())
    with connect(target.admin_url) as conn:
        assert conn.execute(
            "SELECT name FROM orgs WHERE id = %s", (org_id,)
        ).fetchone() == ("Initech",)


def test_user_create_reads_the_password_from_stdin_and_joins_every_org(target, api):
    first = uuid.UUID(orgsafe(target, "org", "create", "First").stdout.strip())
    second = uuid.UUID(orgsafe(target, "org", "create", "Second").stdout.strip())
    email = f"Dana-{uuid.uuid4().hex[:6]}@Example.test"
    done = orgsafe(
        target,
        "user",
        "create",
        email,
        "--org",
        str(first),
        "--org",
        str(second),
        stdin="a long enough password\n",
    )
    assert done.returncode == 0, done.stderr
    user_id = uuid.UUID(done.stdout.strip())
    with connect(target.admin_url) as conn:
        row = conn.execute(
            "SELECT email, default_org_id FROM users WHERE id = %s", (user_id,)
        ).fetchone()
        orgs = {
            r[0]
            for r in conn.execute(
                "SELECT org_id FROM memberships WHERE user_id = %s", (user_id,)
            )
        }
    assert row == (email.lower(), first)
    assert orgs == {first, second}
    login = api("production").call(
        "POST",
        "/api/auth/login",
        json={"email": email, "password": "a long enough password"},
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("args", "stdin", "names"),
    [
        (
            ("user", "create", "x@example.test", "--org", "nope"),
            "password123\n",
            "--org",
        ),
        (
            ("user", "create", "not-an-email", "--org", str(uuid.uuid4())),
            "password123\n",
            "email",
        ),
        (
            ("user", "create", "y@example.test", "--org", str(uuid.uuid4())),
            "password123\n",
            "no such org",
        ),
        (
            ("user", "create", "z@example.test", "--org", str(uuid.uuid4())),
            "short\n",
            "password",
        ),
        (
            ("user", "create", "z@example.test", "--org", str(uuid.uuid4())),
            "",
            "password",
        ),
        (("user", "create", "z@example.test"), "", "--org"),
        (("serve", "--port", "0"), "", "--port"),
        (("org", "create"), "", "name"),
        (("no-such-command",), "", "no-such-command"),
    ],
)
def test_bad_usage_prints_one_line_naming_the_problem_and_exits_2(
    target, args, stdin, names
):
    done = orgsafe(target, *args, stdin=stdin)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert names in lines[0]
    assert "Traceback" not in done.stderr


def test_duplicate_email_is_refused_whatever_its_case(target):
    org = orgsafe(target, "org", "create", "Dup").stdout.strip()
    email = f"same-{uuid.uuid4().hex[:6]}@example.test"
    assert (
        orgsafe(
            target, "user", "create", email, "--org", org, stdin="password123\n"
        ).returncode
        == 0
    )
    again = orgsafe(
        target, "user", "create", email.upper(), "--org", org, stdin="password123\n"
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_unreachable_database_is_one_line_and_exit_3(target, tmp_path):
    bad = f"host={tmp_path} port=1 user=nobody dbname=nothing password=hunter2"
    done = orgsafe(target, "org", "create", "X", env={"DATABASE_URL": bad})
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "error: cannot connect"
    )
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "postgresql://postgres:S3cretPW@[::1"}, "DATABASE_URL"),
        (
            {"ORGSAFE_APP_DATABASE_URL": "postgresql://a:S3cretPW@[::1"},
            "ORGSAFE_APP_DATABASE_URL",
        ),
        ({"ORGSAFE_POOL_MAX_SIZE": "abc"}, "ORGSAFE_POOL_MAX_SIZE"),
        ({"ORGSAFE_MAX_BODY_BYTES": "-5"}, "ORGSAFE_MAX_BODY_BYTES"),
        ({"ORGSAFE_METRICS_TOKEN": "S3cretPW"}, "ORGSAFE_METRICS_TOKEN"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_without_its_value(target, env, names):
    done = orgsafe(target, "doctor", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"error: {names}")
    assert "S3cretPW" not in done.stderr and "Traceback" not in done.stderr


def test_a_bad_database_url_flag_is_one_line_without_the_password(target):
    url = "postgresql://postgres:S3cretPW@[::1"
    done = orgsafe(target, "integrity", "audit", "--database-url", url)
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "error: --database-url is not a valid connection string"
    )


def test_serve_names_a_port_in_use_before_starting_anything(target):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = orgsafe(target, "serve", "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: --port {port} on 127.0.0.1: Address already in use"
    )
