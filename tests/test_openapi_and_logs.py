"""The documented surface and the denial log."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from orgsafe.config import Settings
from orgsafe.web import create_app
from tests.plugins.service import PASSWORD

ROUTES = {
    ("post", "/api/auth/login"),
    ("post", "/api/auth/logout"),
    ("post", "/api/auth/password"),
    ("post", "/api/session/org"),
    ("get", "/api/debug/whoami"),
    ("get", "/api/customers"),
    ("post", "/api/customers"),
    ("get", "/api/customers/{id}"),
    ("patch", "/api/customers/{id}"),
    ("delete", "/api/customers/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


def test_openapi_describes_every_route_with_its_error_bodies(api):
    spec = api("production").call("GET", "/openapi.json").json()
    found = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert found == ROUTES
    for method, path in ROUTES - {("get", "/healthz")}:
        responses = spec["paths"][path][method]["responses"]
        errors = [code for code in responses if code.startswith(("4", "5"))]
        assert errors, (method, path)
        for code in errors:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (
                method,
                path,
                code,
            )
    assert set(spec["components"]["schemas"]["CustomerOut"]["properties"]) == {
        "id",
        "orgId",
        "name",
        "email",
        "createdAt",
        "updatedAt",
    }


def test_health_and_readiness(api):
    client = api("production")
    assert client.call("GET", "/healthz").json() == {"status": "ok"}
    assert client.call("GET", "/readyz").json() == {"status": "ready"}


def test_health_and_readiness_answer_head_probes(api):
    client = api("production")
    for path in ("/healthz", "/readyz"):
        response = client.call("HEAD", path)
        assert response.status_code == 200, path
        assert response.content == b""
        assert response.headers["x-request-id"]


def test_unknown_route_and_method_answer_json_errors(api):
    client = api("production")
    missing = client.call("GET", "/nope")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    wrong = client.call("PUT", "/api/customers")
    assert wrong.status_code == 405 and set(wrong.json()) == {"error"}


def test_every_denial_writes_one_json_line_without_secrets(world, api, capsys):
    client = api("development")
    capsys.readouterr()
    client.call(
        "POST",
        "/api/auth/login",
        json={"email": world.alice, "password": "wrong " + PASSWORD},
    )
    client.call("GET", "/api/customers", world.cookies["carol"])
    client.call(
        "GET",
        "/api/customers",
        world.cookies["alice"],
        headers={"X-Org-Id": str(world.org_b)},
    )
    client.call("GET", f"/api/customers/{world.cb1}", world.cookies["alice"])
    client.call(
        "GET", "/api/customers", world.cookies["alice"], headers={"X-Org-Id": "junk"}
    )
    lines = [
        json.loads(line)
        for line in capsys.readouterr().err.splitlines()
        if '"request_denied"' in line
    ]
    assert [line["status"] for line in lines] == [401, 401, 403, 404, 400]
    required = {
        "event",
        "status",
        "method",
        "path",
        "reason",
        "request_id",
        "user_id",
        "session_org_id",
        "header_org_id",
        "effective_org_id",
    }
    for line in lines:
        assert required <= set(line)
    assert lines[3]["effective_org_id"] == str(world.org_a)
    text = json.dumps(lines)
    for secret in (PASSWORD, world.cookies["alice"], world.cookies["carol"]):
        assert secret not in text


def test_responses_carry_a_request_id_that_matches_the_log(world, api):
    client = api("production")
    with capture_logs() as logs:
        response = client.call(
            "GET", f"/api/customers/{world.cb1}", world.cookies["alice"]
        )
    assert response.status_code == 404
    assert logs[-1]["request_id"] == response.headers["x-request-id"]


def test_an_unexpected_failure_still_answers_with_its_request_id(target):
    app = create_app(Settings(database_url=target.owner_url), target)

    async def broken() -> None:
        raise RuntimeError("a bug, not the client's doing")

    app.add_api_route("/broken", broken)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        capture_logs() as logs,
    ):
        response = client.get("/broken")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error"}
    failures = [line for line in logs if line["event"] == "request_failed"]
    assert len(failures) == 1
    assert failures[0]["request_id"] == response.headers["x-request-id"]
    assert len(response.headers["x-request-id"]) == 32
    assert not [line for line in logs if line["event"] == "request_denied"]
