"""`validate`: prove every existing row satisfies the key, off the writers' path.

VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on the child, which writers do
not conflict with, and runs in its own transaction under an explicit budget. A
row that slipped in since the last repair makes it fail with 23503; the row is
repaired (quarantined first) and validation tried again, a bounded number of
times. A replacement key is swapped in only once it is valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from orgsafe.errors import DatabaseError
from orgsafe.integrity import offenders
from orgsafe.integrity.catalog import ForeignKey, Target, foreign_keys, refresh
from orgsafe.integrity.constrain import REPLACEMENT_SUFFIX, check_types
from orgsafe.integrity.context import Context, Window
from orgsafe.integrity.failures import OffendersRemain, StepRefused
from orgsafe.integrity.repair import repair
from orgsafe.integrity.snapshot import take_snapshot

VALIDATE_LOCK = "ShareUpdateExclusiveLock"
SWAP_LOCK = "AccessExclusiveLock"


def check_window(window: Window | None, now: datetime | None = None) -> None:
    moment = now or datetime.now().astimezone()
    if window is not None and not window.contains(moment):
        raise StepRefused(
            f"--window {window}: refused at {moment:%H:%M} local time, "
            "outside the maintenance window"
        )


def warn_long_transactions(ctx: Context) -> None:
    for line in ctx.session.long_transactions(ctx.options.long_transaction_s):
        ctx.report.warn(
            f"long-running transaction {line}: validation will not wait for it, "
            "but it keeps old row versions alive"
        )


def validate_statement(target: Target, name: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
        target.child.ident, sql.Identifier(name)
    )


def swap_statements(target: Target, old: str, new: str) -> list[sql.Composed]:
    return [
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            target.child.ident, sql.Identifier(old)
        ),
        sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
            target.child.ident, sql.Identifier(new), sql.Identifier(old)
        ),
    ]


def validate(ctx: Context, target: Target) -> dict[str, Any]:
    check_window(ctx.options.window)
    warn_long_transactions(ctx)
    target = refresh(ctx.session, target)
    check_types(target)
    keys = foreign_keys(ctx.session, target)
    if not keys:
        raise StepRefused(
            f"{target.label} has no foreign key to validate: run constrain"
        )
    _gate(ctx, target)
    pending = [fk for fk in keys if not fk.validated]
    if pending and ctx.options.snapshot:
        take_snapshot(ctx, target)
    repaired = 0
    for fk in pending:
        repaired += _validate_one(ctx, target, fk.name)
    name = _swap_replacement(ctx, target)
    final = _confirm(ctx, target, name)
    return {
        "reference": target.name,
        "constraint": final.name,
        "validated": True,
        "was_valid": not pending,
        "repaired_on_retry": repaired,
    }


def _gate(ctx: Context, target: Target) -> None:
    found = offenders.count(ctx.session, target)
    if found:
        raise OffendersRemain(
            f"{target.name}: {found} offenders remain; run repair before validate"
        )


def _validate_one(ctx: Context, target: Target, name: str) -> int:
    """Validate, repairing rows that slipped in; returns how many were repaired."""
    repaired = 0
    for attempt in range(ctx.options.validate_attempts):
        try:
            ctx.session.ddl(
                f"validating {name} on {target.child}",
                [validate_statement(target, name)],
                VALIDATE_LOCK,
                [target.child.oid, target.parent.oid],
                ctx.session.limits.validate_timeout_ms,
            )
            return repaired
        except DatabaseError as exc:
            if exc.sqlstate != "23503":
                raise
            ctx.report.warn(
                f"validating {name} failed on attempt {attempt + 1}: {exc}; "
                "the key stays NOT VALID and still guards new rows; repairing again"
            )
            repaired += int(repair(ctx, target)["changed"])
    raise OffendersRemain(
        f"{name} on {target.child}: offenders kept slipping in through "
        f"{ctx.options.validate_attempts} validation attempts; the key stays NOT VALID"
    )


def _swap_replacement(ctx: Context, target: Target) -> str | None:
    """Drop the old key and give its name to the validated replacement."""
    keys = {fk.name: fk for fk in foreign_keys(ctx.session, target)}
    for name in keys:
        if not name.endswith(REPLACEMENT_SUFFIX):
            continue
        old = [n for n in keys if not n.endswith(REPLACEMENT_SUFFIX)]
        if not old:
            return name
        ctx.session.ddl(
            f"replacing {old[0]} by {name} on {target.child}",
            swap_statements(target, old[0], name),
            SWAP_LOCK,
            [target.child.oid, target.parent.oid],
        )
        return old[0]
    return None


def _confirm(ctx: Context, target: Target, name: str | None) -> ForeignKey:
    keys = foreign_keys(ctx.session, target)
    chosen = [fk for fk in keys if name is None or fk.name == name]
    if not chosen or not all(fk.validated for fk in keys):
        state = ", ".join(f"{fk.name} validated={fk.validated}" for fk in keys)
        raise StepRefused(
            f"{target.label}: pg_constraint does not show a valid key after "
            f"validation ({state or 'no key'}): the catalog drifted"
        )
    return chosen[0]
