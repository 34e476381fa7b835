"""Indexes on a column being retyped online, rebuilt on its converted copy.

The swap drops the old column and with it every index on it, so each plain
index (columns only, no expression or predicate) is built again on the copy
with CREATE INDEX CONCURRENTLY before the swap, and takes the old name in the
swap's transaction. Readers keep their index throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from orgsafe.integrity.catalog import Target
from orgsafe.integrity.failures import LockNotAcquired
from orgsafe.integrity.session import Session, log, timeout_error
from orgsafe.storage import translate

COPY_SUFFIX = "_orgsafe_new"


@dataclass(frozen=True)
class ColumnIndex:
    schema: str
    name: str
    unique: bool
    method: str
    keys: tuple[str, ...]
    include: tuple[str, ...]

    @property
    def copy_name(self) -> str:
        return self.name[: 63 - len(COPY_SUFFIX)] + COPY_SUFFIX


def column_indexes(session: Session, target: Target, copy: str) -> list[ColumnIndex]:
    """Plain indexes using the column, described as they will be on its copy."""
    found = session.rows(
        "SELECT n.nspname, c.relname, i.indisunique, am.amname, i.indnkeyatts, "
        "  array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY "
        "    AS k(attnum, pos) JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "    AND a.attnum = k.attnum ORDER BY k.pos), "
        "  array(SELECT k.attnum FROM unnest(i.indkey::int2[]) AS k(attnum)) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_am am ON am.oid = c.relam "
        "WHERE i.indrelid = %s AND %s = ANY(i.indkey::int2[]) "
        "AND i.indexprs IS NULL AND i.indpred IS NULL "
        "AND c.relname NOT LIKE %s",
        (target.child.oid, target.column.attnum, f"%{COPY_SUFFIX}"),
        "reading the column's indexes",
    )
    made = []
    for schema, name, unique, method, width, names, attnums in found:
        columns = [
            copy if attnum == target.column.attnum else str(column)
            for column, attnum in zip(names, attnums, strict=True)
        ]
        made.append(
            ColumnIndex(
                str(schema),
                str(name),
                bool(unique),
                str(method),
                tuple(columns[:width]),
                tuple(columns[width:]),
            )
        )
    return made


def create_statement(target: Target, index: ColumnIndex) -> sql.Composed:
    include: sql.Composable = sql.SQL("")
    if index.include:
        include = sql.SQL(" INCLUDE ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, index.include))
        )
    return sql.SQL(
        "CREATE {unique}INDEX CONCURRENTLY {name} ON {table} USING {method} "
        "({keys}){include}"
    ).format(
        unique=sql.SQL("UNIQUE " if index.unique else ""),
        name=sql.Identifier(index.copy_name),
        table=target.child.ident,
        method=sql.Identifier(index.method),
        keys=sql.SQL(", ").join(map(sql.Identifier, index.keys)),
        include=include,
    )


def rename_statements(indexes: list[ColumnIndex]) -> list[sql.Composed]:
    return [
        sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(index.schema, index.copy_name), sql.Identifier(index.name)
        )
        for index in indexes
    ]


def build_copies(session: Session, target: Target, indexes: list[ColumnIndex]) -> None:
    for index in indexes:
        state = _copy_state(session, index)
        if state == "valid":
            continue
        if state == "invalid":
            # What a failed CREATE INDEX CONCURRENTLY leaves behind; build it anew.
            _concurrently(
                session, _drop_statement(index), f"dropping {index.copy_name}"
            )
        _build(session, target, index)


def _build(session: Session, target: Target, index: ColumnIndex) -> None:
    doing = f"building {index.copy_name} concurrently"
    limits = session.limits
    for attempt in range(limits.retries + 1):
        try:
            _concurrently(session, create_statement(target, index), doing)
            return
        except LockNotAcquired:
            log.warning(
                "index_lock_timeout", index=index.copy_name, attempt=attempt + 1
            )
            _concurrently(
                session, _drop_statement(index), f"dropping {index.copy_name}"
            )
            time.sleep(limits.backoff_ms * (2**attempt) / 1000)
    raise LockNotAcquired(
        f"{doing}: lock not granted within lock_timeout={limits.lock_timeout_ms}ms "
        f"on {limits.retries + 1} tries",
        session.blockers([target.child.oid], "ShareUpdateExclusiveLock"),
    )


def _copy_state(session: Session, index: ColumnIndex) -> str:
    found = session.rows(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (index.schema, index.copy_name),
        "reading index state",
    )
    if not found:
        return "missing"
    return "valid" if found[0][0] else "invalid"


def _drop_statement(index: ColumnIndex) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
        sql.Identifier(index.schema, index.copy_name)
    )


def _concurrently(session: Session, statement: sql.Composed, doing: str) -> None:
    """Outside any transaction, as CONCURRENTLY requires; limits set per session."""
    conn = session.conn
    limits = session.limits
    try:
        conn.execute(f"SET lock_timeout = {int(limits.lock_timeout_ms)}")
        conn.execute(f"SET statement_timeout = {int(limits.validate_timeout_ms)}")
        conn.execute(statement)
    except psycopg.errors.LockNotAvailable as exc:
        raise LockNotAcquired(f"{doing}: lock not granted", []) from exc
    except psycopg.errors.QueryCanceled as exc:
        raise timeout_error(exc, doing, limits.validate_timeout_ms) from exc
    except psycopg.Error as exc:
        translate(exc, doing)
    finally:
        conn.execute("RESET lock_timeout")
        conn.execute("RESET statement_timeout")
