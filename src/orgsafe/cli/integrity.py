"""`orgsafe integrity ...`: the integrity runbook's commands.

Flags are parsed and checked here; the work is done by
`orgsafe.integrity.commands`. Exit codes are those of `orgsafe.cli`:
0 done, 1 offenders (gate, validate), 2 bad usage, 3 database refused or a
statement timed out, 4 a lock not granted within lock_timeout on any try,
5 refused by a guard (window, types, catalog drift, plan not confirmed).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from orgsafe.errors import OrgsafeError, UsageError
from orgsafe.integrity import commands
from orgsafe.integrity.context import Options, RetypeMode, parse_duration, parse_window
from orgsafe.integrity.output import Reporter
from orgsafe.integrity.refs import (
    Reference,
    parse_fk_action,
    parse_orphan_action,
    select_references,
)
from orgsafe.integrity.runbook import RUN_ORDER
from orgsafe.integrity.session import Limits

integrity_app = typer.Typer(
    help="Find, repair and constrain org references online.",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Connection string; else DATABASE_URL, else the embedded server.",
        show_default=False,
    ),
]
Refs = Annotated[
    list[str] | None,
    typer.Option(
        "--ref",
        help="CHILD.COL=PARENT.COL (schema-qualified allowed); repeat it. "
        "Default: the service's own org references.",
        show_default=False,
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file with [tool.orgsafe.integrity] refs."),
]
Json = Annotated[bool, typer.Option("--json", help="Print only one JSON report.")]
Yes = Annotated[bool, typer.Option("--yes", help="Apply the plan without asking.")]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the plan and its exact SQL; change nothing."),
]
Samples = Annotated[
    int, typer.Option(min=0, max=1000, help="Sample keys per reference.")
]


def _reporter(json_mode: bool) -> Reporter:
    return Reporter(json_mode)


def _refs(ref: list[str] | None, config: Path | None) -> list[Reference]:
    return select_references(list(ref or []), config)


def _ask(question: str) -> bool:
    return bool(typer.confirm(question, default=False))


def _confirm(yes: bool) -> commands.Confirm | None:
    return commands.confirmation(yes, sys.stdin.isatty(), _ask)


def _guarded(
    command: str, report: Reporter, body: Callable[[], dict[str, Any]]
) -> None:
    try:
        payload = body()
    except OrgsafeError as exc:
        commands.report_error(report, command, exc)
        raise
    report.result(payload)


@integrity_app.command("audit")
def audit(
    database_url: DatabaseUrl = None,
    ref: Refs = None,
    config: ConfigFile = None,
    samples: Samples = 10,
    json_output: Json = False,
) -> None:
    """Count offenders and values that will not convert; change nothing."""
    report = _reporter(json_output)
    refs = _refs(ref, config)
    options = Options(samples=samples)

    def body() -> dict[str, Any]:
        url = commands.database_url(database_url)
        with commands.opened(url, Limits(), options, report, "audit") as ctx:
            return commands.run_audit(ctx, refs)

    _guarded("audit", report, body)


@integrity_app.command("gate")
def gate(
    database_url: DatabaseUrl = None,
    ref: Refs = None,
    config: ConfigFile = None,
    json_output: Json = False,
) -> None:
    """Exit 1 when any offender exists, 0 otherwise: a deploy gate."""
    report = _reporter(json_output)
    refs = _refs(ref, config)

    def body() -> dict[str, Any]:
        url = commands.database_url(database_url)
        with commands.opened(url, Limits(), Options(), report, "gate") as ctx:
            return commands.run_gate(ctx, refs)

    _guarded("gate", report, body)


def _change_command(name: str, steps: tuple[str, ...], doc: str) -> None:
    def command(
        database_url: DatabaseUrl = None,
        ref: Refs = None,
        config: ConfigFile = None,
        on_orphan: Annotated[
            str | None,
            typer.Option(
                help="null (default if nullable), quarantine or reassign:VALUE."
            ),
        ] = None,
        on_update: Annotated[
            str | None,
            typer.Option(help="Key action: restrict, cascade, set-null, ..."),
        ] = None,
        on_delete: Annotated[
            str | None,
            typer.Option(help="Key action: restrict, cascade, set-null, ..."),
        ] = None,
        mode: Annotated[
            RetypeMode | None, typer.Option(help="Retype mode; default by row count.")
        ] = None,
        online_threshold: Annotated[
            int, typer.Option(min=0, help="Rows above which retype goes online.")
        ] = 10_000,
        batch_size: Annotated[int, typer.Option(min=1, max=1_000_000)] = 2000,
        pause_ms: Annotated[int, typer.Option(min=0, max=60_000)] = 0,
        lock_timeout: Annotated[str, typer.Option(help="Per DDL lock wait.")] = "2s",
        statement_timeout: Annotated[str, typer.Option(help="Per statement.")] = "60s",
        validate_timeout: Annotated[str, typer.Option(help="VALIDATE budget.")] = "1h",
        retries: Annotated[int, typer.Option(min=0, max=50)] = 5,
        validate_attempts: Annotated[int, typer.Option(min=1, max=20)] = 3,
        window: Annotated[
            str | None,
            typer.Option(help="Validate only within HH:MM-HH:MM local time."),
        ] = None,
        snapshot: Annotated[
            bool, typer.Option(help="pg_dump the tables first.")
        ] = False,
        snapshot_dir: Annotated[Path, typer.Option()] = Path("orgsafe-snapshots"),
        dry_run: DryRun = False,
        yes: Yes = False,
        json_output: Json = False,
    ) -> None:
        report = _reporter(json_output)
        refs = _refs(ref, config)
        options = Options(
            on_orphan=parse_orphan_action(on_orphan) if on_orphan else None,
            on_update=parse_fk_action(on_update, "--on-update"),
            on_delete=parse_fk_action(on_delete, "--on-delete"),
            batch_size=batch_size,
            pause_ms=pause_ms,
            mode=mode,
            online_threshold=online_threshold,
            validate_attempts=validate_attempts,
            snapshot=snapshot,
            snapshot_dir=snapshot_dir,
            window=parse_window(window) if window else None,
        )
        limits = Limits(
            lock_timeout_ms=parse_duration(lock_timeout, "--lock-timeout"),
            statement_timeout_ms=parse_duration(
                statement_timeout, "--statement-timeout"
            ),
            validate_timeout_ms=parse_duration(validate_timeout, "--validate-timeout"),
            retries=retries,
        )
        confirm = _confirm(yes)

        def body() -> dict[str, Any]:
            url = commands.database_url(database_url)
            with commands.opened(url, limits, options, report, name) as ctx:
                return commands.run_steps(ctx, refs, steps, dry_run, confirm)

        _guarded(name, report, body)

    command.__doc__ = doc
    integrity_app.command(name)(command)


_change_command(
    "repair", ("repair",), "Make offenders NULL, move them aside or reassign them."
)
_change_command(
    "retype", ("retype",), "Convert a text child column to the parent's type."
)
_change_command(
    "constrain", ("constrain",), "Add the foreign key NOT VALID, with retries."
)
_change_command("validate", ("validate",), "Validate the key once no offender remains.")
_change_command(
    "run", RUN_ORDER, "Audit, retype, constrain, repair and validate, in order."
)


@integrity_app.command("restore")
def restore(
    run_id: Annotated[str, typer.Argument(help="The run whose values to put back.")],
    database_url: DatabaseUrl = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    json_output: Json = False,
) -> None:
    """Put a run's quarantined values back wherever the schema still allows."""
    report = _reporter(json_output)
    try:
        parsed = uuid.UUID(run_id.strip())
    except ValueError:
        raise UsageError(f"RUN_ID {run_id!r}: not a run id (a uuid)") from None
    confirm = _confirm(yes)

    def body() -> dict[str, Any]:
        url = commands.database_url(database_url)
        with commands.opened(url, Limits(), Options(), report, "restore") as ctx:
            return commands.run_restore(ctx, parsed, dry_run, confirm)

    _guarded("restore", report, body)


@integrity_app.command("history")
def history(
    database_url: DatabaseUrl = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_output: Json = False,
) -> None:
    """Show the recorded runs: who, when, which step, what changed."""
    report = _reporter(json_output)

    def body() -> dict[str, Any]:
        url = commands.database_url(database_url)
        with commands.opened(url, Limits(), Options(), report, "history") as ctx:
            return commands.run_history(ctx, limit)

    _guarded("history", report, body)
