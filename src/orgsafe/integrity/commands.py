"""The runbook's commands, free of any CLI library: the CLI parses flags and
calls these; tests and the benchmark may call them directly too."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from orgsafe.config import Settings
from orgsafe.errors import OrgsafeError
from orgsafe.integrity import offenders
from orgsafe.integrity.audit import audit, describe
from orgsafe.integrity.catalog import Target, resolve
from orgsafe.integrity.context import Context, Options
from orgsafe.integrity.failures import (
    ConfirmationRequired,
    OffendersRemain,
    StepRefused,
)
from orgsafe.integrity.output import Reporter
from orgsafe.integrity.refs import Reference
from orgsafe.integrity.restore import entries, restore
from orgsafe.integrity.runbook import RUN_ORDER, PlannedStep, execute, plan
from orgsafe.integrity.session import Limits, Session, log
from orgsafe.integrity.store import History, read_history
from orgsafe.storage import resolve_target
from orgsafe.storage.database import check_url

Confirm = Callable[[str], bool]


def database_url(explicit: str | None) -> str:
    """--database-url, else DATABASE_URL, else the embedded server's superuser."""
    if explicit:
        return check_url(explicit, "--database-url")
    return resolve_target(Settings()).admin_url


@contextmanager
def opened(
    url: str, limits: Limits, options: Options, report: Reporter, command: str
) -> Iterator[Context]:
    session = Session(url, limits)
    run_id = uuid.uuid4()
    try:
        ctx = Context(
            session, report, History(session, run_id, command), run_id, options
        )
        _announce(ctx, command)
        yield ctx
    finally:
        session.close()


def _announce(ctx: Context, command: str) -> None:
    limits = ctx.session.limits
    inherited = ", ".join(f"{k}={v}" for k, v in ctx.session.inherited_limits.items())
    own = (
        f"lock_timeout={limits.lock_timeout_ms}ms, "
        f"statement_timeout={limits.statement_timeout_ms}ms, "
        f"validation budget={limits.validate_timeout_ms}ms, "
        f"retries={limits.retries}"
    )
    log.info(
        "integrity_start",
        command=command,
        run_id=str(ctx.run_id),
        database=ctx.session.describe(),
        inherited_limits=ctx.session.inherited_limits,
        limits=own,
    )
    ctx.report.line(f"run {ctx.run_id} on {ctx.session.describe()}")
    ctx.report.line(f"limits inherited by the session: {inherited}")
    ctx.report.line(f"limits set in each transaction: {own}")


def targets(ctx: Context, refs: list[Reference]) -> list[Target]:
    return [resolve(ctx.session, ref) for ref in refs]


def run_audit(ctx: Context, refs: list[Reference]) -> dict[str, Any]:
    found = []
    for target in targets(ctx, refs):
        entry = ctx.history.start("audit", target.name)
        result = audit(ctx, target)
        ctx.history.finish(entry, "done", {"offenders": result["offenders"]})
        for line in describe(result):
            ctx.report.line(line)
        found.append(result)
    payload = _payload(ctx, "audit", found)
    total = sum(int(r["offenders"]) for r in found)
    if total:
        ctx.report.result(payload)
        raise OffendersRemain(f"audit found {total} offenders")
    return payload


def run_gate(ctx: Context, refs: list[Reference]) -> dict[str, Any]:
    counts = {t.name: offenders.count(ctx.session, t) for t in targets(ctx, refs)}
    for name, found in counts.items():
        ctx.report.line(f"{name}: {found} offenders")
    total = sum(counts.values())
    payload = _payload(
        ctx, "gate", [{"reference": n, "offenders": c} for n, c in counts.items()]
    )
    if total:
        ctx.report.result({**payload, "passed": False})
        raise OffendersRemain(f"gate failed: {total} offenders in {_nonzero(counts)}")
    ctx.report.line("gate passed: no offenders")
    return {**payload, "passed": True}


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({found})" for name, found in counts.items() if found)


def run_steps(
    ctx: Context,
    refs: list[Reference],
    steps: tuple[str, ...],
    dry_run: bool,
    confirm: Confirm | None,
) -> dict[str, Any]:
    """Plan the steps, show the plan, confirm it, then run it (unless a dry run)."""
    chosen = targets(ctx, refs)
    planned = plan(ctx, chosen, steps)
    _show_plan(ctx, planned)
    name = "run" if steps == RUN_ORDER else steps[0]
    if dry_run:
        _show_sql(ctx, planned)
        return {**_payload(ctx, name, []), "dry_run": True, "plan": _plan_json(planned)}
    changes = [p for p in planned if p.step != "audit"]
    if changes and confirm is not None and not confirm("apply this plan?"):
        raise StepRefused("plan not confirmed: nothing changed")
    return _payload(ctx, name, execute(ctx, planned))


def _show_plan(ctx: Context, planned: list[PlannedStep]) -> None:
    rows = [[p.step, p.target.name, p.summary] for p in planned]
    ctx.report.table("plan", ["step", "reference", "what"], rows)


def _show_sql(ctx: Context, planned: list[PlannedStep]) -> None:
    ctx.report.line("-- dry run: nothing below has been executed")
    for item in planned:
        ctx.report.line(f"-- {item.step} {item.target.name}: {item.summary}")
        if item.step in ("repair", "retype") and item.sql:
            ctx.report.line(
                "-- batch statements repeat with the last key and batch size"
            )
        for statement in item.sql:
            ctx.report.sql(statement)
    if any(p.step == "repair" for p in planned):
        _show_offenders(ctx, planned)


def _show_offenders(ctx: Context, planned: list[PlannedStep]) -> None:
    for item in planned:
        if item.step != "repair":
            continue
        found = offenders.samples(ctx.session, item.target, ctx.options.samples, True)
        for sample in found:
            ctx.report.line(
                f"-- would change {item.target.label} {sample['key']}: "
                f"{sample['value']!r} ({sample['reason']})"
            )


def _plan_json(planned: list[PlannedStep]) -> list[dict[str, Any]]:
    return [
        {"step": p.step, "reference": p.target.name, "what": p.summary, "sql": p.sql}
        for p in planned
    ]


def run_restore(
    ctx: Context, run_id: uuid.UUID, dry_run: bool, confirm: Confirm | None
) -> dict[str, Any]:
    pending = entries(ctx, run_id)
    ctx.report.line(f"{len(pending)} quarantined values of run {run_id} to put back")
    if dry_run:
        for entry in pending:
            ctx.report.line(
                f"-- would restore {entry.schema}.{entry.table}.{entry.column} "
                f"{entry.row_key}: {entry.original!r}"
            )
        return {**_payload(ctx, "restore", []), "dry_run": True}
    if pending and confirm is not None and not confirm("restore these values?"):
        raise StepRefused("restore not confirmed: nothing changed")
    entry_id = ctx.history.start("restore", str(run_id))
    result = restore(ctx, run_id)
    changed = {
        "restored": len(result["restored"]),
        "not_restored": len(result["not_restored"]),
    }
    ctx.history.finish(entry_id, "done", changed)
    for item in result["not_restored"]:
        ctx.report.line(
            f"not restored: {item['table']}.{item['column']} {item['key']} "
            f"{item['value']!r}: {item['reason']}"
        )
    ctx.report.line(
        f"restored {changed['restored']}, not restored {changed['not_restored']}"
    )
    return {**_payload(ctx, "restore", []), **result}


def run_history(ctx: Context, limit: int) -> dict[str, Any]:
    found = read_history(ctx.session, limit)
    rows = [
        [
            str(r["started_at"])[:19],
            r["run_id"][:8],
            r["command"],
            r["step"],
            r["reference"],
            f"{r['db_user']}/{r['os_user']}",
            r["outcome"],
            _short(r["changed"]),
        ]
        for r in found
    ]
    columns = [
        "when",
        "run",
        "command",
        "step",
        "reference",
        "who",
        "outcome",
        "changed",
    ]
    ctx.report.table("integrity history", columns, rows)
    return {"command": "history", "entries": found}


def _short(changed: Any) -> str:
    if not isinstance(changed, dict):
        return str(changed)
    return ", ".join(
        f"{k}={v}" for k, v in changed.items() if not isinstance(v, list | dict)
    )


def _payload(
    ctx: Context, command: str, results: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"command": command, "run_id": str(ctx.run_id), "results": results}


def confirmation(yes: bool, interactive: bool, ask: Confirm) -> Confirm | None:
    """None with --yes; else a question, refused when nobody can answer it."""
    if yes:
        return None

    def confirm(question: str) -> bool:
        if not interactive:
            raise ConfirmationRequired(
                "--yes missing: standard input is not a terminal, so the plan "
                "cannot be confirmed; nothing changed"
            )
        return ask(question)

    return confirm


def report_error(report: Reporter, command: str, exc: OrgsafeError) -> None:
    if report.emitted:
        return
    code = getattr(exc, "exit_code", None)
    report.result({"command": command, "error": str(exc), "exit_code": code})
