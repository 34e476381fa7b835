"""Schema upgrades as copies of the service run them: several at once."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

from psycopg import sql

from orgsafe.storage import connect
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
