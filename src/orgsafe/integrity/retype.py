"""`retype`: convert a text child column to the parent key's type.

Values are trimmed (and lower-cased for uuid), blanks become NULL, and any
other value that will not convert goes to the quarantine first and becomes
NULL, so no ALTER ever fails halfway.

`--mode online` never holds a lock for long: a new column is added with a
trigger keeping it in step with every write, existing rows are backfilled in
batches, and the columns are swapped in one short transaction. Each stage can
be run again after a crash: the new column and trigger are reused.
`--mode rewrite` is one ALTER ... TYPE, for tables small enough to rewrite.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from orgsafe.integrity import offenders
from orgsafe.integrity.catalog import (
    Target,
    column_exists,
    constraint_exists,
    refresh,
    size_of,
)
from orgsafe.integrity.context import Context, RetypeMode
from orgsafe.integrity.failures import StepRefused
from orgsafe.integrity.indexes import build_copies, column_indexes, rename_statements
from orgsafe.integrity.session import timeout_error
from orgsafe.integrity.store import QUARANTINE, SCHEMA, ensure_store
from orgsafe.storage import translate

NEW_SUFFIX = "_orgsafe_new"
EXCLUSIVE = "AccessExclusiveLock"


def new_column(target: Target) -> str:
    return target.column.name[: 63 - len(NEW_SUFFIX)] + NEW_SUFFIX


def function_name(target: Target) -> str:
    return f"retype_{target.child.oid}_{target.column.attnum}"


def trigger_name(target: Target) -> str:
    return f"orgsafe_retype_{target.column.name}"[:63]


def check_name(target: Target) -> str:
    return f"{target.child.name}_{target.column.name}_orgsafe_not_null"[:63]


def choose_mode(ctx: Context, target: Target) -> RetypeMode:
    if ctx.options.mode is not None:
        return ctx.options.mode
    if column_exists(ctx.session, target.child, new_column(target)):
        return RetypeMode.online
    rows, _ = size_of(ctx.session, target.child)
    online = rows > ctx.options.online_threshold
    return RetypeMode.online if online else RetypeMode.rewrite


def retype(ctx: Context, target: Target) -> dict[str, Any]:
    target = refresh(ctx.session, target)
    result: dict[str, Any] = {"reference": target.name}
    if not target.conversion.needs_retype:
        return {**result, "action": "none", "column_type": target.column.type_name}
    mode = choose_mode(ctx, target)
    _check_dependents(ctx, target, mode)
    if target.column.not_null:
        _check_not_null(ctx, target)
    ensure_store(ctx.session)
    if mode is RetypeMode.rewrite:
        _rewrite(ctx, target)
    else:
        _online(ctx, target)
    return {
        **result,
        "action": "converted",
        "mode": mode.value,
        "column_type": target.parent_column.type_name,
        "quarantined": _quarantined(ctx, target),
        "run_id": str(ctx.run_id),
    }


def _check_dependents(ctx: Context, target: Target, mode: RetypeMode) -> None:
    found = ctx.session.rows(
        "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend "
        "WHERE refclassid = 'pg_class'::regclass AND refobjid = %s "
        "AND refobjsubid = %s AND deptype IN ('n', 'a') "
        "AND NOT (classid = 'pg_trigger'::regclass AND objid IN "
        "  (SELECT oid FROM pg_trigger WHERE tgname = %s)) "
        # PostgreSQL 18 records NOT NULL as a constraint; the swap restores it.
        "AND NOT (classid = 'pg_constraint'::regclass AND objid IN "
        "  (SELECT oid FROM pg_constraint WHERE contype = 'n')) "
        # Plain indexes are rebuilt on the copy (see indexes.py).
        "AND NOT (classid = 'pg_class'::regclass AND objid IN "
        "  (SELECT indexrelid FROM pg_index WHERE indrelid = %s "
        "   AND indexprs IS NULL AND indpred IS NULL))",
        (
            target.child.oid,
            target.column.attnum,
            trigger_name(target),
            target.child.oid,
        ),
        "reading what depends on the column",
    )
    if found and mode is RetypeMode.online:
        names = ", ".join(str(row[0]) for row in found)
        raise StepRefused(
            f"--mode online: {target.label} is used by {names}; the swap would drop "
            "them: drop and recreate them around the retype, or use --mode rewrite"
        )


def _check_not_null(ctx: Context, target: Target) -> None:
    value = offenders.column(target, "c")
    conv = target.conversion
    (bad,) = ctx.session.one(
        sql.SQL("SELECT count(*) FROM {} c WHERE {} OR {}").format(
            target.child.ident, conv.blank(value), conv.unconvertible(value)
        ),
        (),
        f"counting values of {target.label} that will not convert",
    )
    if bad:
        raise StepRefused(
            f"{target.label} is NOT NULL and {bad} values will not convert: run "
            "repair with --on-orphan quarantine or reassign:VALUE first"
        )


def _quarantined(ctx: Context, target: Target) -> int:
    (found,) = ctx.session.one(
        f"SELECT count(*) FROM {QUARANTINE} WHERE run_id = %s AND step = 'retype' "
        "AND reference = %s",
        (ctx.run_id, target.name),
        "counting quarantined values",
    )
    return int(found)


def _quarantine_insert(
    ctx: Context, target: Target, source: str, converted: bool = False
) -> sql.Composed:
    """INSERT ... SELECT of the values in `source` (alias d) that will not convert.

    With `converted`, the source carries `new_value`, and a non-blank value
    that converted to NULL is exactly one that will not convert.
    """
    value = sql.SQL("d.old_value")
    conv = target.conversion
    bad = conv.unconvertible(value)
    reason = conv.reason(value)
    if converted:
        new_value = sql.SQL("d.new_value")
        bad = sql.SQL("({v} IS NOT NULL AND {n} IS NULL AND NOT {b})").format(
            v=value, n=new_value, b=conv.blank(value)
        )
        reason = conv.reason(value, new_value)
    return sql.SQL(
        "INSERT INTO {q} (run_id, step, reference, child_schema, child_table, "
        "child_column, row_key, original_value, original_type, action, reason) "
        "SELECT {run}, 'retype', {ref}, {schema}, {table}, {col_name}, {key}, "
        "d.old_value, {type}, 'null', {reason} FROM {source} d WHERE {bad} "
        # A resumed retype must not file the same value twice under a new run.
        "AND NOT EXISTS (SELECT 1 FROM {q} o WHERE o.step = 'retype' "
        "AND o.reference = {ref} AND o.row_key = {key} "
        "AND o.original_value = d.old_value AND o.restored_at IS NULL) "
        "ON CONFLICT DO NOTHING"
    ).format(
        q=sql.SQL(QUARANTINE),
        **offenders.origin(ctx.run_id, target),
        key=offenders.key_json(target, "d"),
        reason=reason,
        source=sql.SQL(source),
        bad=bad,
    )


def rewrite_statements(ctx: Context, target: Target) -> list[sql.Composed]:
    keys = sql.SQL(", ").join(sql.Identifier(k.name) for k in target.row_key)
    return [
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(target.child.ident),
        sql.SQL(
            "WITH d AS (SELECT {keys}, {col} AS old_value FROM {child}) {insert}"
        ).format(
            keys=keys,
            col=sql.Identifier(target.column.name),
            child=target.child.ident,
            insert=_quarantine_insert(ctx, target, "d"),
        ),
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
            target.child.ident,
            sql.Identifier(target.column.name),
            sql.SQL(target.parent_column.type_name),
            target.conversion.converted(sql.Identifier(target.column.name)),
        ),
    ]


def _rewrite(ctx: Context, target: Target) -> None:
    ctx.session.ddl(
        f"converting {target.label} to {target.parent_column.type_name}",
        rewrite_statements(ctx, target),
        EXCLUSIVE,
        [target.child.oid],
        ctx.session.limits.validate_timeout_ms,
    )


def setup_statements(ctx: Context, target: Target) -> list[sql.Composed]:
    new = sql.Identifier(new_column(target))
    return [
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
            target.child.ident, new, sql.SQL(target.parent_column.type_name)
        ),
        _trigger_function(ctx, target),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(trigger_name(target)), target.child.ident
        ),
        sql.SQL(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OF {} ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(
            sql.Identifier(trigger_name(target)),
            sql.Identifier(target.column.name),
            target.child.ident,
            sql.Identifier(SCHEMA, function_name(target)),
        ),
    ]


def _trigger_function(ctx: Context, target: Target) -> sql.Composed:
    # SECURITY DEFINER: the application's role may not write the quarantine.
    value = offenders.column(target, "new")
    conv = target.conversion
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$\n"
        "BEGIN\n"
        "  new.{new} := {conv};\n"
        "  IF {bad} THEN\n"
        "    INSERT INTO {q} (run_id, step, reference, child_schema, child_table, "
        "child_column, row_key, original_value, original_type, action, reason) "
        "VALUES ({run}, 'retype', {ref}, {schema}, {table}, {col_name}, {key}, "
        "{value}, {type}, 'null', {reason}) ON CONFLICT DO NOTHING;\n"
        "  END IF;\n"
        "  RETURN new;\n"
        "END\n$body$"
    ).format(
        fn=sql.Identifier(SCHEMA, function_name(target)),
        new=sql.Identifier(new_column(target)),
        conv=conv.converted(value),
        bad=conv.unconvertible(value),
        q=sql.SQL(QUARANTINE),
        **offenders.origin(ctx.run_id, target),
        key=offenders.key_json(target, "new"),
        value=value,
        reason=conv.reason(value),
    )


def backfill_statement(ctx: Context, target: Target, resume: bool) -> sql.Composed:
    """One batch: the next keys in order, updated as one key range.

    A range (after the last key, up to this batch's highest) lets the UPDATE
    walk the key's index; joining the keys list instead would scan the table.
    The new value is computed from the row as the UPDATE finds it, never from
    a snapshot, so a concurrent write (and its trigger) always wins.
    """
    value = offenders.column(target, "c")
    new = sql.Identifier(new_column(target))
    keys = sql.SQL(", ").join(sql.Identifier("c", k.name) for k in target.row_key)
    after = offenders.after_key(target, "c") if resume else sql.SQL("true")
    return sql.SQL(
        "WITH keys AS (SELECT {keys} FROM {child} c WHERE {after} ORDER BY {order} "
        "LIMIT %s), "
        "upper AS (SELECT * FROM keys k ORDER BY {order_desc} LIMIT 1), "
        "done AS (UPDATE {child} c SET {new} = {conv} FROM upper u "
        "WHERE {after} AND {within} "
        "RETURNING {keys}, {value} AS old_value, c.{new} AS new_value), "
        "saved AS ({insert} RETURNING 1) "
        "SELECT {last}, (SELECT count(*) FROM done), (SELECT count(*) FROM saved) "
        "FROM upper last"
    ).format(
        keys=keys,
        child=target.child.ident,
        after=after,
        order=offenders.key_order(target, "c"),
        order_desc=offenders.key_order(target, "k", descending=True),
        new=new,
        conv=target.conversion.converted(value),
        within=sql.SQL("{} <= {}").format(
            offenders.key_list(target, "c"), offenders.key_list(target, "u")
        ),
        value=value,
        insert=_quarantine_insert(ctx, target, "done", converted=True),
        last=sql.SQL(", ").join(sql.Identifier("last", k.name) for k in target.row_key),
    )


def swap_statements(target: Target) -> list[sql.Composed]:
    child = target.child.ident
    col = sql.Identifier(target.column.name)
    statements = [
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(trigger_name(target)), child
        ),
        sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(child, col),
        sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            child, sql.Identifier(new_column(target)), col
        ),
    ]
    if target.column.not_null:
        statements += [
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(child, col),
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                child, sql.Identifier(check_name(target))
            ),
        ]
    statements.append(
        sql.SQL("DROP FUNCTION IF EXISTS {}()").format(
            sql.Identifier(SCHEMA, function_name(target))
        )
    )
    return statements


def _online(ctx: Context, target: Target) -> None:
    session = ctx.session
    session.ddl(
        f"adding {new_column(target)} and its trigger to {target.child}",
        setup_statements(ctx, target),
        EXCLUSIVE,
        [target.child.oid],
    )
    ctx.checkpoint("retype-setup")
    _backfill(ctx, target)
    if target.column.not_null:
        _prove_not_null(ctx, target)
    copies = column_indexes(session, target, new_column(target))
    build_copies(session, target, copies)
    session.ddl(
        f"swapping {target.label} for its converted copy",
        [*swap_statements(target), *rename_statements(copies)],
        EXCLUSIVE,
        [target.child.oid],
    )


def _backfill(ctx: Context, target: Target) -> None:
    rows, _ = size_of(ctx.session, target.child)
    last: list[Any] | None = None
    with ctx.report.progress(f"retype {target.label}", rows) as ticker:
        while True:
            row = _backfill_batch(ctx, target, last)
            if row is None:
                return
            width = len(target.row_key)
            last = list(row[:width])
            ticker.advance(int(row[width]))
            ctx.checkpoint("retype-batch")
            if ctx.options.pause_ms:
                time.sleep(ctx.options.pause_ms / 1000)


def _backfill_batch(
    ctx: Context, target: Target, last: list[Any] | None
) -> tuple[Any, ...] | None:
    statement = backfill_statement(ctx, target, last is not None)
    try:
        with ctx.session.tx(batch=True) as conn:
            params = [*(last or []), ctx.options.batch_size, *(last or [])]
            return conn.execute(statement, params).fetchone()
    except psycopg.errors.QueryCanceled as exc:
        raise timeout_error(
            exc, f"backfilling {target.label}", ctx.session.limits.statement_timeout_ms
        ) from exc
    except psycopg.Error as exc:
        translate(exc, f"backfilling {target.label} (this batch was rolled back)")


def _prove_not_null(ctx: Context, target: Target) -> None:
    """A validated CHECK lets SET NOT NULL skip its scan under the swap's lock."""
    name = check_name(target)
    child = target.child.ident
    if not constraint_exists(ctx.session, target.child, name):
        ctx.session.ddl(
            f"adding {name}",
            [
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID"
                ).format(
                    child, sql.Identifier(name), sql.Identifier(new_column(target))
                )
            ],
            EXCLUSIVE,
            [target.child.oid],
        )
    ctx.session.ddl(
        f"validating {name}",
        [
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                child, sql.Identifier(name)
            )
        ],
        "ShareUpdateExclusiveLock",
        [target.child.oid],
        ctx.session.limits.validate_timeout_ms,
    )
