"""The runbook's own tables, in schema `orgsafe_integrity`.

`quarantine` keeps every value (or whole row) a step changes, with the row's
key, the reason and the run id, so `restore RUN_ID` can put it back.
`history` records every run: who (database and OS user), when, which step,
and what changed.
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from typing import Any

import psycopg

from orgsafe.integrity.failures import QuarantineUnavailable
from orgsafe.integrity.session import Session, log

SCHEMA = "orgsafe_integrity"
QUARANTINE = f"{SCHEMA}.quarantine"
HISTORY = f"{SCHEMA}.history"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL,
    step text NOT NULL,
    reference text NOT NULL,
    child_schema text NOT NULL,
    child_table text NOT NULL,
    child_column text NOT NULL,
    row_key jsonb NOT NULL,
    original_value text,
    original_type text NOT NULL,
    action text NOT NULL CHECK (action IN ('null', 'reassign', 'quarantine')),
    new_value text,
    row_data jsonb,
    reason text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    restored_at timestamptz,
    restored_by uuid
);
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_once ON {QUARANTINE}
    (run_id, child_schema, child_table, child_column, row_key, original_value);
CREATE INDEX IF NOT EXISTS quarantine_run ON {QUARANTINE} (run_id);
CREATE TABLE IF NOT EXISTS {HISTORY} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL,
    command text NOT NULL,
    step text NOT NULL,
    reference text,
    db_user text NOT NULL DEFAULT current_user,
    os_user text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome text NOT NULL DEFAULT 'started',
    changed jsonb NOT NULL DEFAULT '{{}}',
    detail text
);
"""


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def store_exists(session: Session) -> bool:
    # Not to_regclass: it fails without USAGE on the schema, and this must not.
    (found,) = session.one(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname IN ('quarantine', 'history')",
        (SCHEMA,),
        "looking for the quarantine table",
    )
    return int(found) == 2


def ensure_store(session: Session) -> None:
    """Create the tables if needed and prove the quarantine is writable."""
    if not store_exists(session):
        try:
            with session.tx() as conn:
                conn.execute(DDL)
        except psycopg.Error as exc:
            raise QuarantineUnavailable(
                f"cannot create schema {SCHEMA}: {_first_line(exc)}; nothing changed",
                exc.sqlstate,
            ) from exc
    (writable,) = session.one(
        "SELECT has_schema_privilege(%s, 'USAGE') "
        "AND has_table_privilege(%s, 'INSERT') AND has_table_privilege(%s, 'INSERT')",
        (SCHEMA, QUARANTINE, HISTORY),
        "checking quarantine privileges",
    )
    if not writable:
        raise QuarantineUnavailable(
            f"{QUARANTINE} is not writable by the connecting role: nothing changed"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class History:
    """Rows of `orgsafe_integrity.history` for one command."""

    def __init__(self, session: Session, run_id: uuid.UUID, command: str) -> None:
        self.session = session
        self.run_id = run_id
        self.command = command

    def start(self, step: str, reference: str | None) -> int | None:
        if not store_exists(self.session):
            return None
        with self.session.tx() as conn:
            row = conn.execute(
                f"INSERT INTO {HISTORY} (run_id, command, step, reference, os_user) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (self.run_id, self.command, step, reference, os_user()),
            ).fetchone()
        return int(row[0]) if row else None

    def finish(
        self, entry: int | None, outcome: str, changed: dict[str, Any], detail: str = ""
    ) -> None:
        if entry is None:
            return
        try:
            with self.session.tx() as conn:
                conn.execute(
                    f"UPDATE {HISTORY} SET finished_at = clock_timestamp(), "
                    "outcome = %s, changed = %s::jsonb, detail = %s WHERE id = %s",
                    (outcome, json.dumps(changed, default=str), detail or None, entry),
                )
        except psycopg.Error as exc:
            # The step's own outcome matters more than its record; keep going.
            log.warning("history_not_recorded", entry=entry, error=_first_line(exc))


def read_history(session: Session, limit: int) -> list[dict[str, Any]]:
    if not store_exists(session):
        return []
    found = session.rows(
        f"SELECT run_id::text, command, step, coalesce(reference, ''), db_user, "
        "coalesce(os_user, ''), started_at, finished_at, outcome, changed, "
        f"coalesce(detail, '') FROM {HISTORY} ORDER BY id DESC LIMIT %s",
        (limit,),
        "reading history",
    )
    keys = (
        "run_id",
        "command",
        "step",
        "reference",
        "db_user",
        "os_user",
        "started_at",
        "finished_at",
        "outcome",
        "changed",
        "detail",
    )
    return [dict(zip(keys, row, strict=True)) for row in reversed(found)]
