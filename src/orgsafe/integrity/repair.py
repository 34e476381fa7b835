"""`repair`: set offenders to NULL, move their rows aside, or point them elsewhere.

Each batch is one statement: it locks the next offenders by key order,
changes them only if they still offend (checked again in the same statement,
so a parent created meanwhile saves its children), and writes the original
value, the row key, the reason and the run id to the quarantine in the same
transaction. If the quarantine insert fails, the statement fails and nothing
changes.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from orgsafe.errors import DatabaseError, UsageError
from orgsafe.integrity import offenders
from orgsafe.integrity.catalog import Target
from orgsafe.integrity.context import Context
from orgsafe.integrity.refs import OrphanAction, OrphanKind
from orgsafe.integrity.session import timeout_error
from orgsafe.integrity.store import QUARANTINE, ensure_store
from orgsafe.integrity.values import Conversion
from orgsafe.storage import translate


def check_action(target: Target, action: OrphanAction | None) -> None:
    """Refuse an explicit `null` for a NOT NULL column before anything runs."""
    if action is not None and action.kind is OrphanKind.null and target.column.not_null:
        raise UsageError(
            f"--on-orphan null: {target.label} is NOT NULL; "
            "use --on-orphan quarantine or reassign:VALUE"
        )


def choose_action(ctx: Context, target: Target, found: int) -> OrphanAction:
    action = target.on_orphan or ctx.options.on_orphan
    check_action(target, action)
    if action is None and target.column.not_null:
        raise UsageError(
            f"--on-orphan: {target.label} is NOT NULL and has {found} offenders; "
            "choose --on-orphan quarantine or reassign:VALUE"
        )
    return action or OrphanAction(OrphanKind.null)


def check_reassign(ctx: Context, target: Target, action: OrphanAction) -> OrphanAction:
    """The reassign value as the parent stores it; refused if no parent has it."""
    if action.kind is not OrphanKind.reassign:
        return action
    probe = Conversion("text", target.parent_column.type_name, target.input_check)
    value = probe.converted(sql.SQL("{}::text").format(sql.Literal(action.value)))
    query = sql.SQL("SELECT p.{col}::text FROM {parent} p WHERE p.{col} = {value}")
    try:
        found = ctx.session.rows(
            query.format(
                col=sql.Identifier(target.parent_column.name),
                parent=target.parent.ident,
                value=value,
            ),
            (),
            "checking the reassign value",
        )
    except DatabaseError as exc:
        if exc.sqlstate not in ("22P02", "22003"):
            raise
        raise UsageError(
            f"--on-orphan reassign:{action.value}: not a valid "
            f"{target.parent_column.type_name}"
        ) from exc
    if not found:
        raise UsageError(
            f"--on-orphan reassign:{action.value}: no row in {target.parent_label} "
            "has that value"
        )
    return OrphanAction(OrphanKind.reassign, str(found[0][0]))


def repair(ctx: Context, target: Target) -> dict[str, Any]:
    found = offenders.count(ctx.session, target)
    if found == 0:
        return {"reference": target.name, "offenders": 0, "changed": 0}
    action = choose_action(ctx, target, found)
    action = check_reassign(ctx, target, action)
    ensure_store(ctx.session)
    changed = _batches(ctx, target, action, found)
    return {
        "reference": target.name,
        "offenders": found,
        "changed": changed,
        "action": str(action),
        "run_id": str(ctx.run_id),
    }


def _batches(ctx: Context, target: Target, action: OrphanAction, total: int) -> int:
    changed = 0
    last: list[Any] | None = None
    with ctx.report.progress(f"repair {target.label}", total) as ticker:
        while True:
            done = _one_batch(ctx, target, action, last)
            if done is None:
                return changed
            last, count = done
            changed += count
            ticker.advance(count)
            if ctx.options.pause_ms:
                time.sleep(ctx.options.pause_ms / 1000)


def _one_batch(
    ctx: Context, target: Target, action: OrphanAction, last: list[Any] | None
) -> tuple[list[Any], int] | None:
    """Find the next offenders without locking, then change them in one statement.

    Row locks are taken only by the second statement, so a writer touching
    one of these rows waits for a few index lookups, never for the scan.
    """
    find = find_statement(target, last is not None)
    try:
        with ctx.session.tx(batch=True) as conn:
            keys = conn.execute(
                find, [*(last or []), ctx.options.batch_size]
            ).fetchall()
            if not keys:
                return None
            columns = [list(column) for column in zip(*keys, strict=True)]
            row = conn.execute(batch_statement(ctx, target, action), columns).fetchone()
    except psycopg.errors.QueryCanceled as exc:
        raise timeout_error(
            exc, f"repairing {target.name}", ctx.session.limits.statement_timeout_ms
        ) from exc
    except psycopg.Error as exc:
        # One transaction per batch: a failure here changed nothing in the batch.
        translate(exc, f"repairing {target.name} (this batch was rolled back)")
    return list(keys[-1]), int(row[0]) if row else 0


def find_statement(target: Target, resume: bool) -> sql.Composed:
    return sql.SQL(
        "SELECT {keys} FROM {child} c WHERE {after} AND {offends} "
        "ORDER BY {order} LIMIT %s"
    ).format(
        keys=sql.SQL(", ").join(sql.Identifier("c", k.name) for k in target.row_key),
        child=target.child.ident,
        after=offenders.after_key(target, "c") if resume else sql.SQL("true"),
        offends=offenders.offender(target),
        order=offenders.key_order(target, "c"),
    )


def _listed_keys(target: Target) -> sql.Composable:
    """`(keys) IN (unnest of one array per key column)`, the arrays as parameters."""
    arrays = sql.SQL(", ").join(
        sql.SQL("%s::{}[]").format(sql.SQL(k.type_name)) for k in target.row_key
    )
    return sql.SQL("{} IN (SELECT * FROM unnest({}))").format(
        offenders.key_list(target, "c"), arrays
    )


def batch_statement(ctx: Context, target: Target, action: OrphanAction) -> sql.Composed:
    change = _move if action.kind is OrphanKind.quarantine else _update
    return sql.SQL(
        "WITH batch AS ("
        "SELECT {keys}, c.{col} AS old_value, {reason} AS reason FROM {child} c "
        "WHERE {listed} AND {offends} FOR UPDATE OF c), "
        "changed AS ({change}), "
        "saved AS (INSERT INTO {quarantine} (run_id, step, reference, child_schema, "
        "child_table, child_column, row_key, original_value, original_type, action, "
        "new_value, row_data, reason) SELECT {run}, 'repair', {ref}, "
        "{schema}, {table}, "
        "{col_name}, {key_json}, ch.old_value::text, {type}, {action}, {new_text}, "
        "ch.row_data, ch.reason FROM changed ch ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM saved)"
    ).format(
        keys=sql.SQL(", ").join(sql.Identifier("c", k.name) for k in target.row_key),
        col=sql.Identifier(target.column.name),
        reason=offenders.offender_reason(target),
        child=target.child.ident,
        listed=_listed_keys(target),
        offends=offenders.offender(target),
        change=change(target, action),
        quarantine=sql.SQL(QUARANTINE),
        **offenders.origin(ctx.run_id, target),
        key_json=offenders.key_json(target, "ch"),
        action=sql.Literal(action.kind.value),
        new_text=sql.Literal(action.value),
    )


def _update(target: Target, action: OrphanAction) -> sql.Composable:
    new: sql.Composable = sql.SQL("NULL")
    if action.kind is OrphanKind.reassign:
        new = sql.SQL("{}::{}").format(
            sql.Literal(action.value), sql.SQL(target.column.type_name)
        )
    return sql.SQL(
        "UPDATE {child} c SET {col} = {new} FROM batch b WHERE {same} AND {offends} "
        "RETURNING {keys}, b.old_value, b.reason, NULL::jsonb AS row_data"
    ).format(
        child=target.child.ident,
        col=sql.Identifier(target.column.name),
        new=new,
        same=offenders.same_key(target, "c", "b"),
        offends=offenders.offender(target),
        keys=sql.SQL(", ").join(sql.Identifier("c", k.name) for k in target.row_key),
    )


def _move(target: Target, action: OrphanAction) -> sql.Composable:
    return sql.SQL(
        "DELETE FROM {child} c USING batch b WHERE {same} AND {offends} "
        "RETURNING {keys}, b.old_value, b.reason, to_jsonb(c.*) AS row_data"
    ).format(
        child=target.child.ident,
        same=offenders.same_key(target, "c", "b"),
        offends=offenders.offender(target),
        keys=sql.SQL(", ").join(sql.Identifier("c", k.name) for k in target.row_key),
    )
