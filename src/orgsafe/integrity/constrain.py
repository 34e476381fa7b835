"""`constrain`: the foreign key, added NOT VALID so it never scans under a lock.

An existing key from the child column to the parent table is kept unless its
ON UPDATE / ON DELETE actions differ from ones asked for explicitly; then a new
key is added under a temporary name beside it, and `validate` swaps them (drop
the old, rename the new) in one short transaction, so the column is never
without a key. After every change the catalog is read back; anything other than
what was asked for is drift, and the step stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from orgsafe.integrity.catalog import ForeignKey, Target, foreign_keys, refresh
from orgsafe.integrity.context import Context, Options
from orgsafe.integrity.failures import StepRefused
from orgsafe.integrity.refs import FK_ACTION_SQL

DEFAULT_ON_UPDATE = "c"
DEFAULT_ON_DELETE = "r"
REPLACEMENT_SUFFIX = "_orgsafe_new"
ADD_LOCK = "ShareRowExclusiveLock"


@dataclass(frozen=True)
class KeyPlan:
    """What constrain will do: keep a key, add one, or add a replacement."""

    action: str
    name: str
    on_update: str
    on_delete: str
    replaces: str | None = None


def default_name(target: Target) -> str:
    return f"{target.child.name}_{target.column.name}_fkey"[:63]


def replacement_name(name: str) -> str:
    return name[: 63 - len(REPLACEMENT_SUFFIX)] + REPLACEMENT_SUFFIX


def matches(fk: ForeignKey, options: Options) -> bool:
    """Same parent column and, where asked for, the same actions."""
    return (options.on_update is None or fk.on_update == options.on_update) and (
        options.on_delete is None or fk.on_delete == options.on_delete
    )


def plan_key(ctx: Context, target: Target) -> KeyPlan:
    options = ctx.options
    keys = [
        fk
        for fk in foreign_keys(ctx.session, target)
        if fk.parent_attnum == target.parent_column.attnum
    ]
    for fk in keys:
        if matches(fk, options):
            return KeyPlan("keep", fk.name, fk.on_update, fk.on_delete)
    on_update = options.on_update or DEFAULT_ON_UPDATE
    on_delete = options.on_delete or DEFAULT_ON_DELETE
    old = [fk for fk in keys if not fk.name.endswith(REPLACEMENT_SUFFIX)]
    if old:
        name = replacement_name(old[0].name)
        return KeyPlan("replace", name, on_update, on_delete, old[0].name)
    return KeyPlan("add", default_name(target), on_update, on_delete)


def add_statement(target: Target, plan: KeyPlan) -> sql.Composed:
    return sql.SQL(
        "ALTER TABLE {child} ADD CONSTRAINT {name} FOREIGN KEY ({col}) "
        "REFERENCES {parent} ({pcol}) ON UPDATE {upd} ON DELETE {dele} NOT VALID"
    ).format(
        child=target.child.ident,
        name=sql.Identifier(plan.name),
        col=sql.Identifier(target.column.name),
        parent=target.parent.ident,
        pcol=sql.Identifier(target.parent_column.name),
        upd=sql.SQL(FK_ACTION_SQL[plan.on_update]),
        dele=sql.SQL(FK_ACTION_SQL[plan.on_delete]),
    )


def check_types(target: Target) -> None:
    if target.conversion.needs_retype:
        raise StepRefused(
            f"{target.label} is {target.column.type_name}, {target.parent_label} is "
            f"{target.parent_column.type_name}: run retype first"
        )


def constrain(ctx: Context, target: Target) -> dict[str, Any]:
    target = refresh(ctx.session, target)
    check_types(target)
    plan = plan_key(ctx, target)
    result: dict[str, Any] = {"reference": target.name, "constraint": plan.name}
    if plan.action == "keep":
        fk = _read(ctx, target, plan.name)
        return {**result, "action": "kept", "validated": fk.validated}
    ctx.session.ddl(
        f"adding foreign key {plan.name} to {target.child}",
        [add_statement(target, plan)],
        ADD_LOCK,
        [target.child.oid, target.parent.oid],
    )
    fk = _read(ctx, target, plan.name)
    verify(fk, plan)
    action = "added" if plan.replaces is None else f"added beside {plan.replaces}"
    return {**result, "action": action, "validated": fk.validated}


def _read(ctx: Context, target: Target, name: str) -> ForeignKey:
    for fk in foreign_keys(ctx.session, target):
        if fk.name == name:
            return fk
    raise StepRefused(
        f"foreign key {name} on {target.child} is missing from pg_constraint "
        "right after it was written: the catalog drifted"
    )


def verify(fk: ForeignKey, plan: KeyPlan) -> None:
    """Exit on drift: the catalog must hold exactly the key that was asked for."""
    if (fk.on_update, fk.on_delete) != (plan.on_update, plan.on_delete):
        raise StepRefused(
            f"foreign key {fk.name} drifted: pg_constraint says ON UPDATE "
            f"{FK_ACTION_SQL[fk.on_update]} ON DELETE {FK_ACTION_SQL[fk.on_delete]}, "
            f"expected {FK_ACTION_SQL[plan.on_update]} / "
            f"{FK_ACTION_SQL[plan.on_delete]}"
        )
