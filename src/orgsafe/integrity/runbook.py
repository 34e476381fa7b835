"""The plan (which step does what to which reference) and running it.

`run` orders the steps per reference: audit, retype, constrain, repair,
validate. The key is added NOT VALID before the last repair, so from then on
no new offender can slip in. A NOT NULL text column cannot take NULLs for its
unconvertible values, so its offenders are repaired before the retype too.
Every step reads the catalog again and does only what is still missing, which
is why `run` may simply be started again after a crash.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orgsafe.errors import OrgsafeError
from orgsafe.integrity import offenders
from orgsafe.integrity.audit import audit
from orgsafe.integrity.catalog import Target, foreign_keys, refresh
from orgsafe.integrity.constrain import add_statement, constrain, plan_key
from orgsafe.integrity.context import Context, RetypeMode
from orgsafe.integrity.indexes import (
    column_indexes,
    create_statement,
    rename_statements,
)
from orgsafe.integrity.repair import (
    batch_statement,
    check_action,
    check_reassign,
    choose_action,
    find_statement,
    repair,
)
from orgsafe.integrity.retype import (
    backfill_statement,
    choose_mode,
    new_column,
    retype,
    rewrite_statements,
    setup_statements,
    swap_statements,
)
from orgsafe.integrity.session import log
from orgsafe.integrity.store import ensure_store
from orgsafe.integrity.validate import swap_statements as key_swap_statements
from orgsafe.integrity.validate import validate, validate_statement

StepFunction = Callable[[Context, Target], dict[str, Any]]
STEPS: dict[str, StepFunction] = {
    "audit": audit,
    "retype": retype,
    "constrain": constrain,
    "repair": repair,
    "validate": validate,
}
RUN_ORDER = ("audit", "retype", "constrain", "repair", "validate")


@dataclass(frozen=True)
class PlannedStep:
    step: str
    target: Target
    summary: str
    sql: list[str]


def converted(target: Target) -> Target:
    """The reference as it will look once retype has run."""
    column = dataclasses.replace(
        target.column, type_name=target.parent_column.type_name
    )
    return dataclasses.replace(target, column=column)


def plan(
    ctx: Context, targets: list[Target], steps: tuple[str, ...]
) -> list[PlannedStep]:
    planned: list[PlannedStep] = []
    for target in targets:
        action = target.on_orphan or ctx.options.on_orphan
        check_action(target, action)
        if action is not None:
            # A reassign value no parent has is refused before any step runs.
            check_reassign(ctx, target, action)
        for step in _steps_for(ctx, target, steps):
            planned.append(_plan_step(ctx, target, step))
    return planned


def _steps_for(ctx: Context, target: Target, steps: tuple[str, ...]) -> list[str]:
    chosen = list(steps)
    early_repair = target.column.not_null and target.conversion.needs_retype
    if early_repair and "retype" in chosen and "repair" in chosen:
        chosen.insert(chosen.index("retype"), "repair")
    return chosen


def _plan_step(ctx: Context, target: Target, step: str) -> PlannedStep:
    render = ctx.session.render
    if step == "audit":
        return PlannedStep(step, target, "count offenders and bad values", [])
    if step == "retype":
        return _plan_retype(ctx, target)
    after = converted(target) if target.conversion.needs_retype else target
    if step == "constrain":
        key = plan_key(ctx, after)
        sql_text = [] if key.action == "keep" else [render(add_statement(after, key))]
        summary = f"{key.action} foreign key {key.name}"
        return PlannedStep(step, target, summary, sql_text)
    if step == "repair":
        # Counting through a text-to-uuid conversion is a slow scan; the step
        # counts again when it runs, after the retype made it cheap.
        pending = target.conversion.needs_retype
        found = -1 if pending else offenders.count(ctx.session, target)
        if not found:
            return PlannedStep(
                step, target, "no offenders now; re-checked when run", []
            )
        action = choose_action(ctx, target, max(found, 0))
        statements = [
            render(find_statement(after, resume=True)),
            render(batch_statement(ctx, after, action)),
        ]
        count = "offenders counted after retype" if found < 0 else f"{found} offenders"
        summary = f"{count} -> {action}, batches of {ctx.options.batch_size}"
        return PlannedStep(step, target, summary, statements)
    return _plan_validate(ctx, after)


def _plan_retype(ctx: Context, target: Target) -> PlannedStep:
    render = ctx.session.render
    if not target.conversion.needs_retype:
        summary = f"none: already {target.column.type_name}"
        return PlannedStep("retype", target, summary, [])
    mode = choose_mode(ctx, target)
    summary = f"{target.column.type_name} -> {target.parent_column.type_name} ({mode})"
    if mode is RetypeMode.rewrite:
        statements = rewrite_statements(ctx, target)
    else:
        copies = column_indexes(ctx.session, target, new_column(target))
        statements = [
            *setup_statements(ctx, target),
            backfill_statement(ctx, target, resume=True),
            *(create_statement(target, index) for index in copies),
            *swap_statements(target),
            *rename_statements(copies),
        ]
    return PlannedStep("retype", target, summary, [render(s) for s in statements])


def _plan_validate(ctx: Context, target: Target) -> PlannedStep:
    keys = (
        foreign_keys(ctx.session, target) if not target.conversion.needs_retype else []
    )
    if keys and all(fk.validated for fk in keys):
        return PlannedStep("validate", target, "key already valid", [])
    key = plan_key(ctx, target)
    statements = [validate_statement(target, key.name)]
    if key.replaces:
        statements += key_swap_statements(target, key.replaces, key.name)
    render = ctx.session.render
    summary = f"validate {key.name}"
    return PlannedStep("validate", target, summary, [render(s) for s in statements])


def execute(ctx: Context, planned: list[PlannedStep]) -> list[dict[str, Any]]:
    """Run the planned steps in order; the first failure stops the run."""
    if any(p.step != "audit" for p in planned):
        ensure_store(ctx.session)
    results: list[dict[str, Any]] = []
    for item in planned:
        results.append(run_step(ctx, item.step, item.target))
        ctx.checkpoint(item.step)
    return results


def run_step(ctx: Context, step: str, target: Target) -> dict[str, Any]:
    entry = ctx.history.start(step, target.name)
    log.info("step_start", step=step, reference=target.name, run_id=str(ctx.run_id))
    started = time.monotonic()
    try:
        # Earlier steps change the catalog: act on the column as it is now.
        result = STEPS[step](ctx, refresh(ctx.session, target))
    except OrgsafeError as exc:
        ctx.history.finish(entry, "failed", {}, str(exc))
        raise
    result["seconds"] = round(time.monotonic() - started, 3)
    ctx.history.finish(entry, "done", _changes(result))
    log.info("step_done", step=step, reference=target.name, **_changes(result))
    ctx.report.line(f"{step} {target.name}: {_summary(result)}")
    return {"step": step, **result}


RECORDED = (
    "action",
    "offenders",
    "changed",
    "quarantined",
    "mode",
    "column_type",
    "constraint",
    "validated",
    "repaired_on_retry",
    "seconds",
)


def _changes(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in RECORDED if k in result}


def _summary(result: dict[str, Any]) -> str:
    keys = ("action", "offenders", "changed", "quarantined", "constraint", "validated")
    return ", ".join(f"{k}={result[k]}" for k in keys if k in result) or "done"
