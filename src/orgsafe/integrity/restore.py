"""`restore RUN_ID`: put quarantined values back where the schema still allows.

Each value goes back in its own transaction, and only onto a row that still
holds what the run left there, so a value the application has changed since
is never overwritten. A value that no longer fits (a validated key, a new
column type, a NOT NULL) stays in the quarantine and is named with the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from orgsafe.errors import UsageError
from orgsafe.integrity.context import Context
from orgsafe.integrity.store import QUARANTINE, store_exists
from orgsafe.storage import translate


@dataclass(frozen=True)
class Entry:
    id: int
    schema: str
    table: str
    column: str
    row_key: dict[str, Any]
    original: str | None
    action: str
    new_value: str | None
    row_data: dict[str, Any] | None


def entries(ctx: Context, run_id: uuid.UUID) -> list[Entry]:
    if not store_exists(ctx.session):
        raise UsageError(f"restore {run_id}: no quarantine table in this database")
    found = ctx.session.rows(
        f"SELECT id, child_schema, child_table, child_column, row_key, original_value, "
        f"action, new_value, row_data, restored_at IS NOT NULL FROM {QUARANTINE} "
        "WHERE run_id = %s ORDER BY id",
        (run_id,),
        "reading the quarantine",
    )
    if not found:
        raise UsageError(f"restore {run_id}: no quarantined values carry this run id")
    return [Entry(*row[:9]) for row in found if not row[9]]


def restore(ctx: Context, run_id: uuid.UUID) -> dict[str, Any]:
    restored: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for entry in entries(ctx, run_id):
        problem = _restore_one(ctx, entry)
        record = {
            "table": f"{entry.schema}.{entry.table}",
            "column": entry.column,
            "key": entry.row_key,
            "value": entry.original,
        }
        if problem is None:
            restored.append(record)
        else:
            refused.append({**record, "reason": problem})
    return {"run_id": str(run_id), "restored": restored, "not_restored": refused}


def _restore_one(ctx: Context, entry: Entry) -> str | None:
    """None when the value is back, else why it cannot go back."""
    types = _column_types(ctx, entry)
    if types is None:
        return f"table {entry.schema}.{entry.table} or its columns no longer exist"
    statement, params = (
        _insert(entry) if entry.action == "quarantine" else _update(entry, types)
    )
    try:
        with ctx.session.tx() as conn:
            if conn.execute(statement, params).rowcount == 0:
                return "the row is gone or holds another value since the run"
            conn.execute(
                f"UPDATE {QUARANTINE} SET restored_at = clock_timestamp(), "
                "restored_by = %s WHERE id = %s",
                (ctx.run_id, entry.id),
            )
    except psycopg.errors.ForeignKeyViolation as exc:
        return f"blocked by foreign key {exc.diag.constraint_name} (23503)"
    except psycopg.errors.NotNullViolation:
        return f"{entry.column} is NOT NULL now"
    except psycopg.errors.UniqueViolation as exc:
        return f"blocked by unique constraint {exc.diag.constraint_name}"
    except psycopg.errors.CheckViolation as exc:
        return f"blocked by check constraint {exc.diag.constraint_name}"
    except psycopg.errors.DataError:
        return (
            f"{entry.original!r} does not fit {entry.column}, now {types[entry.column]}"
        )
    except psycopg.Error as exc:
        translate(exc, f"restoring quarantine entry {entry.id}")
    return None


def _column_types(ctx: Context, entry: Entry) -> dict[str, str] | None:
    found = ctx.session.rows(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (ctx.session.render(sql.Identifier(entry.schema, entry.table)),),
        "reading column types",
    )
    types = {str(name): str(kind) for name, kind in found}
    needed = [entry.column, *entry.row_key]
    return types if all(name in types for name in needed) else None


def _update(entry: Entry, types: dict[str, str]) -> tuple[sql.Composed, list[Any]]:
    def typed(name: str) -> sql.Composable:
        return sql.SQL("CAST(%s::text AS {})").format(sql.SQL(types[name]))

    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), typed(k)) for k in entry.row_key
    )
    col = sql.Identifier(entry.column)
    statement = sql.SQL(
        "UPDATE {t} SET {col} = {value} WHERE {where} AND {col} IS NOT "
        "DISTINCT FROM {now}"
    ).format(
        t=sql.Identifier(entry.schema, entry.table),
        col=col,
        value=typed(entry.column),
        where=where,
        now=typed(entry.column),
    )
    params = [
        entry.original,
        *(str(v) for v in entry.row_key.values()),
        entry.new_value,
    ]
    return statement, params


def _insert(entry: Entry) -> tuple[sql.Composed, list[Any]]:
    table = sql.Identifier(entry.schema, entry.table)
    statement = sql.SQL(
        "INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, %s::jsonb)"
    ).format(t=table)
    return statement, [psycopg.types.json.Jsonb(entry.row_data)]
