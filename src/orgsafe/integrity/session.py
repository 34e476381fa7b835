"""The one connection a step works through: explicit limits, DDL with retries.

Every transaction sets its own `lock_timeout` and `statement_timeout` with
SET LOCAL, so the values hold through a transaction pooler and cannot be
overridden by a role, database or pooler default. DDL runs in its own short
transaction; when its lock is not granted in time it is rolled back, the
sessions holding conflicting locks are named, and it is tried again after a
backoff with jitter, a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo, sql

from orgsafe.errors import DatabaseError
from orgsafe.integrity.failures import LockNotAcquired, StepTimeout
from orgsafe.logs import get_logger
from orgsafe.storage import connect, redact, translate

log = get_logger("orgsafe.integrity")

APPLICATION_NAME = "orgsafe-integrity"
Query = str | sql.SQL | sql.Composed
Row = tuple[Any, ...]

# Which held lock modes block a request for a given mode (PostgreSQL's table).
_CONFLICTS = {
    "ShareUpdateExclusiveLock": (
        "ShareUpdateExclusiveLock ShareLock ShareRowExclusiveLock "
        "ExclusiveLock AccessExclusiveLock"
    ),
    "ShareRowExclusiveLock": (
        "RowExclusiveLock ShareUpdateExclusiveLock ShareLock "
        "ShareRowExclusiveLock ExclusiveLock AccessExclusiveLock"
    ),
    "AccessExclusiveLock": (
        "AccessShareLock RowShareLock RowExclusiveLock ShareUpdateExclusiveLock "
        "ShareLock ShareRowExclusiveLock ExclusiveLock AccessExclusiveLock"
    ),
    "RowShareLock": "ExclusiveLock AccessExclusiveLock",
}

_LIMIT_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
)


@dataclass(frozen=True)
class Limits:
    """Time budgets; every value in milliseconds."""

    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 60_000
    validate_timeout_ms: int = 3_600_000
    scan_timeout_ms: int = 1_800_000
    retries: int = 5
    backoff_ms: int = 200


class Session:
    """A connection in autocommit mode; transactions are always explicit."""

    def __init__(
        self, url: str, limits: Limits, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.url = url
        self.limits = limits
        self._sleep = sleep
        named = conninfo.make_conninfo(url, application_name=APPLICATION_NAME)
        self.conn = connect(named, autocommit=True)
        # No server-side prepared statements: a transaction pooler may run the
        # next transaction on another server session, where they do not exist.
        self.conn.prepare_threshold = None
        self.server_version = self.conn.info.server_version
        self.inherited_limits = self._read_limits()

    def close(self) -> None:
        self.conn.close()

    def describe(self) -> str:
        return redact(self.url)

    def _read_limits(self) -> dict[str, str]:
        found = self.conn.execute(
            "SELECT name, setting || coalesce(unit, ''), source FROM pg_settings "
            "WHERE name = ANY(%s) ORDER BY name",
            (list(_LIMIT_SETTINGS),),
        ).fetchall()
        return {str(name): f"{value} ({source})" for name, value, source in found}

    @contextmanager
    def tx(
        self,
        statement_ms: int | None = None,
        lock_ms: int | None = None,
        batch: bool = False,
    ) -> Iterator[psycopg.Connection[Row]]:
        """A transaction with its own limits set by SET LOCAL."""
        statement = (
            self.limits.statement_timeout_ms if statement_ms is None else statement_ms
        )
        lock = self.limits.lock_timeout_ms if lock_ms is None else lock_ms
        with self.conn.transaction():
            self._set_local("statement_timeout", statement)
            self._set_local("lock_timeout", lock)
            self._set_local("idle_in_transaction_session_timeout", 0)
            if self.server_version >= 170000:
                self._set_local("transaction_timeout", 0)
            if batch:
                # A batch and its quarantine rows commit or vanish together, and
                # a re-run redoes a lost batch: no need to wait for the flush.
                self.conn.execute("SET LOCAL synchronous_commit = off")
            yield self.conn

    def _set_local(self, name: str, value_ms: int) -> None:
        self.conn.execute(
            "SELECT set_config(%s, %s, true)", (name, f"{int(value_ms)}ms")
        )

    def rows(
        self, query: Query, params: Sequence[Any] = (), doing: str = ""
    ) -> list[Row]:
        """Rows of a read, under the scan budget."""
        try:
            with self.tx(self.limits.scan_timeout_ms) as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise timeout_error(
                exc, doing or "reading", self.limits.scan_timeout_ms
            ) from exc
        except psycopg.Error as exc:
            translate(exc, doing or "reading the catalog")

    def one(self, query: Query, params: Sequence[Any] = (), doing: str = "") -> Row:
        found = self.rows(query, params, doing)
        if not found:
            raise AssertionError(
                f"no row from a query that always returns one: {doing}"
            )
        return found[0]

    def render(self, query: str | sql.Composable) -> str:
        if isinstance(query, str):
            return query
        return query.as_string(self.conn)

    def ddl(
        self,
        doing: str,
        statements: Sequence[Query],
        lock_mode: str,
        relations: Sequence[int],
        statement_ms: int | None = None,
    ) -> None:
        """Run statements in one transaction, retrying when a lock is not granted."""
        budget = (
            self.limits.statement_timeout_ms if statement_ms is None else statement_ms
        )
        blockers: list[str] = []
        for attempt in range(self.limits.retries + 1):
            try:
                self._ddl_once(statements, budget)
                log.info("ddl_done", doing=doing, attempt=attempt + 1)
                return
            except psycopg.errors.LockNotAvailable:
                blockers = self.blockers(relations, lock_mode)
                log.warning(
                    "ddl_lock_timeout",
                    doing=doing,
                    attempt=attempt + 1,
                    lock_timeout_ms=self.limits.lock_timeout_ms,
                    blockers=blockers,
                )
                if self._cancel_autovacuum(relations, lock_mode):
                    continue
            except psycopg.errors.QueryCanceled as exc:
                raise timeout_error(exc, doing, budget) from exc
            except psycopg.errors.ForeignKeyViolation as exc:
                # The detail names the offending key; the caller may repair it.
                detail = exc.diag.message_detail or ""
                raise DatabaseError(
                    f"{doing}: {_first_line(exc)} {detail}", "23503"
                ) from exc
            except psycopg.Error as exc:
                translate(exc, doing)
            if attempt < self.limits.retries:
                self._sleep(self._backoff(attempt))
        raise LockNotAcquired(
            f"{doing}: lock not granted within lock_timeout="
            f"{self.limits.lock_timeout_ms}ms on {self.limits.retries + 1} tries; "
            f"held by {'; '.join(blockers) or 'sessions that have since finished'}",
            blockers,
        )

    def _ddl_once(self, statements: Sequence[Query], budget: int) -> None:
        with self.tx(budget) as conn:
            for statement in statements:
                conn.execute(statement)

    def _backoff(self, attempt: int) -> float:
        base = self.limits.backoff_ms * (2**attempt) / 1000
        # Jitter keeps several waiting migrations from retrying in lockstep.
        return float(min(base, 30.0) * random.uniform(0.5, 1.0))  # noqa: S311

    def _cancel_autovacuum(self, relations: Sequence[int], lock_mode: str) -> bool:
        """Cancel autovacuum workers in the way, as the server itself would.

        PostgreSQL cancels an autovacuum that blocks a lock request once
        deadlock_timeout has passed, but only while the request waits, which a
        short lock_timeout never allows. Autovacuum simply runs again later;
        one preventing wraparound is left alone.
        """
        modes = _CONFLICTS.get(lock_mode, _CONFLICTS["AccessExclusiveLock"]).split()
        try:
            found = self.conn.execute(
                "SELECT a.pid, pg_cancel_backend(a.pid) FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.granted AND l.relation = ANY(%s) AND l.mode = ANY(%s) "
                "AND a.backend_type = 'autovacuum worker' "
                "AND a.query NOT LIKE '%%to prevent wraparound%%'",
                (list(relations), modes),
            ).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            log.warning("autovacuum_not_cancelled", reason="insufficient privilege")
            return False
        for pid, cancelled in found:
            log.warning("autovacuum_cancelled", pid=pid, cancelled=cancelled)
        return any(cancelled for _, cancelled in found)

    def blockers(self, relations: Sequence[int], lock_mode: str) -> list[str]:
        """Sessions holding locks that conflict with `lock_mode` on the relations."""
        modes = _CONFLICTS.get(lock_mode, _CONFLICTS["AccessExclusiveLock"]).split()
        found = self.conn.execute(
            "SELECT DISTINCT a.pid, coalesce(a.state, 'unknown'), "
            "  extract(epoch FROM now() - a.xact_start)::int, "
            "  to_char(a.query_start AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), '
            "  l.relation::regclass::text, l.mode "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.relation = ANY(%s) AND l.mode = ANY(%s) "
            "  AND a.pid <> pg_backend_pid() ORDER BY 1",
            (list(relations), modes),
        ).fetchall()
        return [
            f"pid {pid} ({state}, transaction open {age}s, query started {start}, "
            f"{mode} on {rel})"
            for pid, state, age, start, rel, mode in found
        ]

    def long_transactions(self, older_than_s: int) -> list[str]:
        found = self.conn.execute(
            "SELECT pid, coalesce(state, 'unknown'), "
            "  extract(epoch FROM now() - xact_start)::int "
            "FROM pg_stat_activity WHERE xact_start < now() - "
            "make_interval(secs => %s) "
            "  AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "ORDER BY xact_start",
            (older_than_s,),
        ).fetchall()
        return [
            f"pid {pid} ({state}, transaction open {age}s)" for pid, state, age in found
        ]


def timeout_error(
    exc: psycopg.errors.QueryCanceled, doing: str, budget_ms: int
) -> StepTimeout:
    """Say which limit fired: statement_timeout, or a cancel from outside."""
    text = str(exc)
    if "statement timeout" in text:
        reason = f"cancelled by statement_timeout={budget_ms}ms (57014)"
    elif "transaction timeout" in text:
        reason = "cancelled by transaction_timeout (57014)"
    else:
        reason = "cancelled from outside, e.g. pg_cancel_backend (57014)"
    return StepTimeout(
        f"{doing}: {reason}; raise the budget and run the step again", "57014"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
