"""Row-level security: the second wall, tried through the app's own role."""

from __future__ import annotations

import psycopg
import pytest

from orgsafe.storage import connect


def app_conn(world):
    return connect(world.target.app_url)


def test_a_query_with_no_org_filter_sees_one_org_only(world):
    with app_conn(world) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(world.org_a),))
        rows = conn.execute("SELECT name FROM customers ORDER BY name").fetchall()
    assert [r[0] for r in rows if r[0] in ("CA1", "CA2", "CB1")] == ["CA1", "CA2"]
    assert {r[0] for r in rows} <= {"CA1", "CA2"} | _other_org_a_names(world)


def _other_org_a_names(world) -> set[str]:
    return {
        row[0]
        for row in world.sql(
            "SELECT name FROM customers WHERE org_id = %s", (world.org_a,)
        )
    }


@pytest.mark.parametrize("setting", [None, ""])
def test_unset_or_empty_org_setting_sees_no_row_and_raises_no_error(world, setting):
    with app_conn(world) as conn:
        # A connection that has run an earlier transaction with an org set.
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(world.org_a),))
        conn.commit()
        if setting is not None:
            conn.execute("SELECT set_config('app.org_id', %s, true)", (setting,))
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)


def test_app_role_cannot_write_into_another_org(world):
    with app_conn(world) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(world.org_a),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO customers (org_id, name) VALUES (%s, 'smuggled')",
                (world.org_b,),
            )
    with app_conn(world) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(world.org_a),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "UPDATE customers SET org_id = %s WHERE id = %s",
                (world.org_b, world.ca1),
            )
    assert world.sql("SELECT org_id FROM customers WHERE id = %s", (world.ca1,)) == [
        (world.org_a,)
    ]


def test_app_role_is_not_owner_superuser_or_bypassrls(world):
    with app_conn(world) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        owner = conn.execute(
            "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class"
            " WHERE relname = 'customers'"
            " AND relnamespace = 'public'::regnamespace"
        ).fetchone()
    assert row == (False, False)
    assert owner == (False,)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE customers DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE customers NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY customers_org ON customers",
        "CREATE POLICY open_door ON customers USING (true)",
        "SET row_security = off; SELECT count(*) FROM customers",
    ],
)
def test_app_role_cannot_switch_row_security_off(world, statement):
    with app_conn(world) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_app_role_cannot_read_other_sessions_or_users(world):
    with app_conn(world) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        conn.execute(
            "SELECT set_config('app.user_id', %s, true)", (str(world.alice_id),)
        )
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
        assert conn.execute("SELECT id FROM users").fetchall() == [(world.alice_id,)]


def test_policy_on_a_table_owner_without_force_is_no_wall(scratch_url):
    """The trap the service avoids: owners skip policies unless FORCE is set."""
    role = "scratch_owner_" + _suffix(scratch_url)
    with connect(scratch_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
    try:
        with connect(scratch_url) as conn:
            conn.execute(
                f"CREATE TABLE t (org text, v int); ALTER TABLE t OWNER TO {role}"
            )
            conn.execute("INSERT INTO t VALUES ('a', 1), ('b', 2)")
            conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY")
            conn.execute(
                "CREATE POLICY p ON t USING (org = current_setting('app.org', true))"
            )
            conn.execute(f"SET LOCAL ROLE {role}")
            conn.execute("SELECT set_config('app.org', 'a', true)")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
            conn.execute("RESET ROLE")
            conn.execute("ALTER TABLE t FORCE ROW LEVEL SECURITY")
            conn.execute(f"SET LOCAL ROLE {role}")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
            conn.rollback()
    finally:
        with connect(scratch_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def _suffix(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"].rsplit("_", 1)[-1]


def test_an_unfiltered_query_inside_a_request_transaction_sees_one_org(world, target):
    """The guard's own transaction: whatever the query forgets, the policy holds."""
    import asyncio

    from starlette.requests import Request

    from orgsafe.config import Settings
    from orgsafe.web import create_app

    app = create_app(Settings(database_url=target.owner_url), target)
    guard = app.state.guard
    cookie = f"orgsafe_session={world.cookies['alice']}".encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"cookie", cookie)],
    }

    async def unfiltered() -> set:
        await guard.pool.open(wait=True)
        try:
            async with guard.tenant(Request(scope)) as tenant:
                cur = await tenant.conn.execute("SELECT DISTINCT org_id FROM customers")
                return {row[0] for row in await cur.fetchall()}
        finally:
            await guard.pool.close()

    assert asyncio.run(unfiltered()) == {world.org_a}
