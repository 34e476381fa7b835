"""The `orgsafe` command.

Output here is for people; structured logs go to standard error through
`orgsafe.logs`. Every failure ends in one line `error: ...` and a documented
exit code:

    0  done
    1  offenders found, or a gate failed
    2  bad usage: a wrong flag, value or setting
    3  the database refused or could not be reached
    4  a lock could not be taken in time (integrity steps)
    5  refused by a guard: outside the maintenance window, a check failed
"""

from __future__ import annotations

import sys
from typing import NoReturn

import pydantic
import typer

from orgsafe.cli.admin import register as register_admin
from orgsafe.cli.integrity import integrity_app
from orgsafe.errors import (
    ConfigError,
    DatabaseError,
    OrgsafeError,
    UsageError,
)

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_LOCK = 4
EXIT_REFUSED = 5

app = typer.Typer(
    name="orgsafe",
    help="A tenant-safe service and an integrity runbook for multi-tenant PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_admin(app)
app.add_typer(integrity_app, name="integrity")


def fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def exit_code_for(exc: OrgsafeError) -> int:
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, UsageError | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, DatabaseError):
        return EXIT_DATABASE
    return EXIT_REFUSED


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode, click returns the code of `typer.Exit(code)`.
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:
        _usage_failure(exc)
    except typer.Abort:
        fail("aborted", EXIT_REFUSED)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except OrgsafeError as exc:
        fail(str(exc), exit_code_for(exc))
    except pydantic.ValidationError as exc:
        fail(setting_problem(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if isinstance(code, int) and code:
        raise SystemExit(code)


def setting_problem(exc: pydantic.ValidationError) -> str:
    """The environment variable at fault, without echoing its value."""
    errors = exc.errors()
    if not errors:
        return "a setting is invalid"
    field = str(errors[0]["loc"][0]) if errors[0]["loc"] else "setting"
    name = "DATABASE_URL" if field == "database_url" else f"ORGSAFE_{field.upper()}"
    return f"{name}: {errors[0]['msg'].lower()}"


def _usage_failure(exc: typer.TyperException) -> NoReturn:
    # Typer's parser errors all derive from TyperException; a bare group or a bare
    # `orgsafe` asks for help, which is printed whole.
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help())
        raise SystemExit(EXIT_USAGE)
    text = " ".join(exc.format_message().split()) or "bad usage"
    text = text[0].lower() + text[1:].rstrip(".")
    fail(text, EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
