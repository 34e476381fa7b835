"""guard_settle against guard_lookup, statement by statement, at the same now().

Each case sets a session's expiry, last-seen time and org relative to now() in
one transaction (as the admin), then acts as the app role and runs, each in a
savepoint that is rolled back: the full lookup alone, and the lean lookup
followed (when it gives no org) by the full one. Both must serve the same user
and org, leave the same settings, refresh last_seen_at alike and agree on
whether the session is live.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

import pytest
from psycopg import sql

from orgsafe.storage import DatabaseTarget, connect
from orgsafe.tenancy import accounts
from orgsafe.tenancy.sessions import TOUCH_EVERY, new_token, token_hash

IDLE = timedelta(minutes=30)
EPS = "interval '1 microsecond'"

EXPIRES = {
    "expired_by_1us": f"now() - {EPS}",
    "expires_now": "now()",
    "expires_in_1us": f"now() + {EPS}",
}
LAST_SEEN = {
    "idle_by_1us": f"now() - %(idle)s - {EPS}",
    "idle_exactly": "now() - %(idle)s",
    "idle_in_1us": f"now() - %(idle)s + {EPS}",
    "touch_by_1us": f"now() - %(touch)s - {EPS}",
    "touch_exactly": "now() - %(touch)s",
    "fresh": "now()",
    "future": "now() + interval '1 hour'",
}
ORG = ("held", "not_held", "null", "deleted")
SETTINGS = ("app.session_hash", "app.user_id", "app.org_id")


def snapshot(cur, digest: str) -> dict:
    cur.execute(
        "SELECT " + ", ".join(f"current_setting('{s}', true)" for s in SETTINGS)
    )
    settings = cur.fetchone()
    cur.execute(
        "SELECT last_seen_at = now() FROM sessions WHERE token_hash = %s", (digest,)
    )
    row = cur.fetchone()
    return {"settings": settings, "touched": row[0] if row else None}


def full(cur, digest: str) -> tuple:
    cur.execute(
        "SELECT session_user_id, session_org_id, live, preset_org_id,"
        " default_org_id, member_org_ids"
        " FROM guard_lookup(%s, %s, %s, true)",
        (digest, IDLE, TOUCH_EVERY),
    )
    return cur.fetchone()


@pytest.fixture
def people(target: DatabaseTarget):
    tag = secrets.token_hex(3)
    held = accounts.create_org(target, f"held {tag}")
    other = accounts.create_org(target, f"other {tag}")
    email = f"p-{tag}@example.test"
    user = accounts.create_user(target, email, "correct horse battery", [held]).id
    return user, held, other


CASES = list(itertools.product(EXPIRES, LAST_SEEN, ORG))


@pytest.mark.parametrize(("expires", "seen", "org"), CASES)
def test_lean_then_full_equals_full(target, people, expires, seen, org):
    user, held, other = people
    digest = token_hash(new_token())
    with connect(target.admin_url) as conn, conn.cursor() as cur:
        gone = None
        if org == "deleted":
            gone = accounts.create_org(target, f"gone {secrets.token_hex(3)}")
            cur.execute(
                "INSERT INTO memberships (user_id, org_id) VALUES (%s, %s)",
                (user, gone),
            )
        session_org = {"held": held, "not_held": other, "null": None, "deleted": gone}
        cur.execute(
            "INSERT INTO sessions (token_hash, user_id, org_id, expires_at,"
            " last_seen_at) VALUES (%(h)s, %(u)s, %(o)s, "
            + EXPIRES[expires]
            + ", "
            + LAST_SEEN[seen]
            + ")",
            {
                "h": digest,
                "u": user,
                "o": session_org[org],
                "idle": IDLE,
                "touch": TOUCH_EVERY,
            },
        )
        if org == "deleted":
            cur.execute("DELETE FROM orgs WHERE id = %s", (gone,))
        cur.execute(
            sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(target.app_role))
        )

        cur.execute("SAVEPOINT only_full")
        only_full = full(cur, digest)
        only_full_state = snapshot(cur, digest)
        cur.execute("ROLLBACK TO SAVEPOINT only_full")

        cur.execute("SAVEPOINT lean")
        cur.execute(
            "SELECT * FROM guard_settle(%s, %s, %s)", (digest, IDLE, TOUCH_EVERY)
        )
        lean = cur.fetchone()
        if lean[1] is None:
            after = full(cur, digest)
        else:
            after = None
        lean_state = snapshot(cur, digest)
        cur.execute("ROLLBACK TO SAVEPOINT lean")
        conn.rollback()

    live = bool(only_full and only_full[2])
    served_by_session = live and only_full[3] == str(only_full[1])
    # The lean lookup serves exactly the sessions the full one presets.
    assert (lean[1] is not None) == served_by_session
    if lean[1] is not None:
        assert (lean[0], lean[1]) == (only_full[0], only_full[1])
    else:
        assert after == only_full
    assert lean_state == only_full_state
