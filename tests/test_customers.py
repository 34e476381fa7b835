"""Customers: one org's rows only, whatever id or body a client sends."""

from __future__ import annotations

import threading
import uuid

import psycopg

from tests.plugins.database import wait_for_lock_wait

UNKNOWN = "c0ffee00-0000-4000-8000-000000000000"
NOT_FOUND = {"error": "Customer not found"}


def test_another_orgs_unknown_and_malformed_ids_all_answer_the_same_404(world, api):
    client = api("production")
    alice = world.cookies["alice"]
    cb1 = str(world.cb1)
    answers = [
        client.call("GET", f"/api/customers/{cb1}", alice),
        client.call("PATCH", f"/api/customers/{cb1}", alice, json={"name": "changed"}),
        client.call("DELETE", f"/api/customers/{cb1}", alice),
        client.call("PATCH", f"/api/customers/{UNKNOWN}", alice, json={"name": "x"}),
        client.call("GET", "/api/customers/123", alice),
        client.call("DELETE", "/api/customers/%20", alice),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json() == NOT_FOUND for a in answers)
    assert world.sql(
        "SELECT name, org_id FROM customers WHERE id = %s", (world.cb1,)
    ) == [("CB1", world.org_b)]


def test_a_client_sent_org_id_is_refused_and_nothing_is_created(world, api):
    client = api("production")
    made = client.call(
        "POST",
        "/api/customers",
        world.cookies["alice"],
        json={"name": "n", "orgId": str(world.org_b)},
    )
    assert made.status_code == 400
    assert made.json() == {"error": "Unknown field: orgId"}
    assert world.sql("SELECT count(*) FROM customers WHERE name = 'n'") == [(0,)]


def test_create_get_update_delete_in_the_users_org(world, api):
    client = api("production")
    alice = world.cookies["alice"]
    made = client.call(
        "POST",
        "/api/customers",
        alice,
        json={"name": "  New one ", "email": "Buyer@Example.TEST"},
    )
    assert made.status_code == 201
    body = made.json()
    assert (body["name"], body["email"], body["orgId"]) == (
        "New one",
        "buyer@example.test",
        str(world.org_a),
    )
    ident = body["id"]
    assert client.call("GET", f"/api/customers/{ident}", alice).json() == body
    patched = client.call(
        "PATCH", f"/api/customers/{ident}", alice, json={"email": None}
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["email"]) == ("New one", None)
    assert patched.json()["updatedAt"] >= body["updatedAt"]
    # Bob cannot see it; alice can delete it once.
    assert (
        client.call("GET", f"/api/customers/{ident}", world.cookies["bob"]).status_code
        == 404
    )
    assert client.call("DELETE", f"/api/customers/{ident}", alice).status_code == 204
    assert client.call("DELETE", f"/api/customers/{ident}", alice).status_code == 404


def test_bad_bodies_answer_400_and_change_nothing(world, api):
    client = api("production")
    alice = world.cookies["alice"]
    bad = [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": 5},
        {"name": "ok", "email": "not-an-email"},
        {"name": "ok", "email": "a@" + "b" * 320 + ".test"},
    ]
    for body in bad:
        response = client.call("POST", "/api/customers", alice, json=body)
        assert response.status_code == 400, body
        assert set(response.json()) == {"error"}
    raw = client.call(
        "POST",
        "/api/customers",
        alice,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert raw.status_code == 400
    assert raw.json() == {"error": "Request body is not valid JSON"}
    for body in ({"name": None}, {"name": ""}, {"id": str(uuid.uuid4())}):
        response = client.call("PATCH", f"/api/customers/{world.ca1}", alice, json=body)
        assert response.status_code == 400, body
    assert world.sql(
        "SELECT count(*) FROM customers WHERE org_id = %s", (world.org_a,)
    ) == [(2,)]
    assert world.sql("SELECT name FROM customers WHERE id = %s", (world.ca1,)) == [
        ("CA1",)
    ]


def test_pages_walk_every_customer_once_and_bad_cursors_are_400(world, api):
    client = api("production")
    alice = world.cookies["alice"]
    for n in range(5):
        assert (
            client.call(
                "POST", "/api/customers", alice, json={"name": f"extra {n}"}
            ).status_code
            == 201
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.call("GET", "/api/customers", alice, params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    for params in ({"cursor": "garbage"}, {"limit": 0}, {"limit": 101}, {"limit": "x"}):
        response = client.call("GET", "/api/customers", alice, params=params)
        assert response.status_code == 400, params
        assert set(response.json()) == {"error"}


def test_a_header_naming_a_deleted_org_is_refused_like_any_foreign_org(world, api):
    client = api("development")
    world.sql(
        "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
        (world.carol_id, world.org_b),
    )
    world.sql("DELETE FROM customers WHERE org_id = %s", (world.org_b,))
    world.sql("DELETE FROM orgs WHERE id = %s", (world.org_b,))
    made = client.call(
        "POST",
        "/api/customers",
        world.cookies["carol"],
        json={"name": "late"},
        headers={"X-Org-Id": str(world.org_b)},
    )
    assert made.status_code == 403
    assert world.sql("SELECT count(*) FROM customers WHERE name = 'late'") == [(0,)]


def test_org_deleted_between_the_check_and_the_insert_answers_invalid_org(world, api):
    client = api("production")
    world.sql("DELETE FROM customers WHERE org_id = %s", (world.org_a,))
    deleter = psycopg.connect(world.target.admin_url)
    try:
        # The delete is made but not committed: the request's check still sees the
        # org, and its insert waits on the org row until the delete commits.
        deleter.execute("DELETE FROM orgs WHERE id = %s", (world.org_a,))
        answer: dict[str, object] = {}

        def create() -> None:
            answer["response"] = client.call(
                "POST", "/api/customers", world.cookies["alice"], json={"name": "raced"}
            )

        worker = threading.Thread(target=create)
        worker.start()
        wait_for_lock_wait(world.target.admin_url, "INSERT INTO customers")
        deleter.commit()
        worker.join(timeout=20)
    finally:
        deleter.close()
    response = answer["response"]
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid org"}
    assert world.sql("SELECT count(*) FROM customers WHERE name = 'raced'") == [(0,)]
