"""Schema upgrades as copies of the service run them: several at once."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import pytest
from psycopg import sql

from orgsafe.storage import connect
from orgsafe.storage.database import with_user
from orgsafe.storage.migrate import MIGRATION_LOCK

COPIES = 6


def waiting_for_lock(conn) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND objid = %s AND NOT granted",
        (MIGRATION_LOCK,),
    ).fetchone()
    return int(row[0])


def role_exists(conn, role: str) -> bool:
    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return found.fetchone() is not None


def test_copies_starting_at_once_all_come_up(scratch_url):
    # Every `orgsafe serve` upgrades the schema before it serves, and a deploy
    # starts its copies together. Each must come up; none may trip over another
    # creating or altering the app role ("tuple concurrently updated"). Holding
    # the lock here lines all of them up before any may go on, then lets them
    # race for it.
    role = f"orgsafe_app_{secrets.token_hex(3)}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORGSAFE_")}
    base |= {"DATABASE_URL": scratch_url, "ORGSAFE_APP_ROLE": role}
    with connect(scratch_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        copies = [
            subprocess.Popen(
                [sys.executable, "-m", "orgsafe", "db", "upgrade"],
                env=base | {"ORGSAFE_STATEMENT_TIMEOUT_MS": str(4000 + n)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(COPIES)
        ]
        try:
            deadline = time.monotonic() + 60
            while waiting_for_lock(holder) < COPIES and time.monotonic() < deadline:
                time.sleep(0.05)
            assert waiting_for_lock(holder) == COPIES
            # Nobody touched the role before taking the lock.
            assert not role_exists(holder, role)
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            outcomes = [(c.wait(timeout=60), c.communicate()[1]) for c in copies]
            assert [code for code, _ in outcomes] == [0] * COPIES, outcomes

            settings = holder.execute(
                "SELECT s.setconfig FROM pg_db_role_setting s"
                " JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = %s",
                (role,),
            ).fetchall()
            versions = holder.execute("SELECT version_num FROM alembic_version")
            assert len(versions.fetchall()) == 1
            # One copy's setting, whole: whichever took the lock last wrote it.
            [[config]] = settings
            assert len(config) == 1
            written = {f"statement_timeout={4000 + n}ms" for n in range(COPIES)}
            assert config[0] in written
        finally:
            for copy in copies:
                if copy.poll() is None:
                    copy.kill()
                copy.communicate()
            if role_exists(holder, role):
                name = sql.Identifier(role)
                holder.execute(sql.SQL("DROP OWNED BY {}").format(name))
                holder.execute(sql.SQL("DROP ROLE {}").format(name))


def upgrade_once(url: str, role: str, **more: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGSAFE_")}
    env |= {"DATABASE_URL": url, "ORGSAFE_APP_ROLE": role} | more
    return subprocess.run(
        [sys.executable, "-m", "orgsafe", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("step", ["role", "migrations"])
def test_a_copy_that_gives_up_waiting_says_so_in_one_line(scratch_url, step):
    # A DATABASE_URL role with a lock_timeout gives up on a lock another copy
    # holds: one line and exit 3, at either place the upgrade waits.
    role = f"orgsafe_app_{secrets.token_hex(3)}"
    impatient = f"{scratch_url} options='-c lock_timeout=300'"
    try:
        if step == "migrations":
            # The role is in place, so only the migrations wait.
            assert upgrade_once(scratch_url, role).returncode == 0
        with connect(scratch_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            if step == "migrations":
                # Only the migrations' own lock: let the role step through.
                holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
                holder.execute("BEGIN")
                holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            done = upgrade_once(impatient, role)
            holder.execute("ROLLBACK" if step == "migrations" else "SELECT 1")
        assert done.returncode == 3, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: ")
        assert "lock timeout" in done.stderr
    finally:
        with connect(scratch_url, autocommit=True) as conn:
            if role_exists(conn, role):
                name = sql.Identifier(role)
                conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
                conn.execute(sql.SQL("DROP ROLE {}").format(name))


def test_a_role_made_by_hand_is_enough_without_createrole(scratch_url):
    # The refusal's advice, followed: an owner without CREATEROLE upgrades once
    # the app role and its timeout are in place.
    owner = f"orgsafe_owner_{secrets.token_hex(3)}"
    role = f"orgsafe_app_{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_hex(8)
    owner_url = with_user(scratch_url, owner, password)
    with connect(scratch_url, autocommit=True) as admin:
        dbname = admin.info.dbname
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(password)
            )
        )
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(dbname), sql.Identifier(owner)
            )
        )
        admin.execute(
            sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner))
        )
    try:
        refused = upgrade_once(owner_url, role)
        assert refused.returncode == 3
        assert refused.stderr.count("\n") == 1
        assert "lacks CREATEROLE" in refused.stderr
        with connect(scratch_url, autocommit=True) as admin:
            for statement in quoted_advice(refused.stderr):
                admin.execute(statement)
        done = upgrade_once(owner_url, role)
        assert done.returncode == 0, done.stderr
        # A password to set is another matter: that needs CREATEROLE, and the
        # refusal says so, without the password.
        secret = "app-pw-" + secrets.token_hex(8)
        again = upgrade_once(owner_url, role, ORGSAFE_APP_PASSWORD=secret)
        assert again.returncode == 3
        assert again.stderr.count("\n") == 1
        assert "with ORGSAFE_APP_PASSWORD set" in again.stderr
        assert secret not in again.stderr
    finally:
        with connect(scratch_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(
                    sql.Identifier(dbname)
                )
            )
            for name in (role, owner):
                if role_exists(admin, name):
                    admin.execute(
                        sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name))
                    )
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def quoted_advice(message: str) -> list[str]:
    """The two statements the refusal tells an operator to run."""
    create = message[message.index("CREATE ROLE") : message.index(" and ALTER ROLE")]
    alter = message[message.index("ALTER ROLE") :].strip()
    return [create, alter]
