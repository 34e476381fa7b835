"""`orgsafe serve`, `orgsafe db`, `orgsafe org` and `orgsafe user`."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from orgsafe.config import Settings
from orgsafe.errors import OrgsafeError, UsageError
from orgsafe.storage import DatabaseTarget, resolve_target, upgrade
from orgsafe.tenancy import accounts


class RefusedError(OrgsafeError):
    """A guard refused to go on."""

    exit_code = 5


db_app = typer.Typer(help="Schema migrations.", no_args_is_help=True)
org_app = typer.Typer(help="Manage orgs.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)


def quiet() -> None:
    """Admin commands print for people; their logs only say what went wrong."""
    from orgsafe import logs

    logs.configure(logging.WARNING, force=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("doctor")(doctor)
    app.add_typer(db_app, name="db")
    app.add_typer(org_app, name="org")
    app.add_typer(user_app, name="user")


class GracefulServer:
    """uvicorn's server, ending with exit status 0 after a graceful shutdown.

    uvicorn re-raises SIGTERM once it has drained; the process would then die by
    the signal and skip its exit handlers, leaving the embedded server running.
    """

    def __init__(self, config: Any) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                with super().capture_signals():
                    yield
                    self._captured_signals.clear()

        self.server = Server(config)

    def run(self) -> None:
        self.server.run()


def migrated_target(settings: Settings) -> DatabaseTarget:
    target = resolve_target(settings)
    upgrade(target, settings.app_password, settings.statement_timeout_ms)
    return target


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    demo: Annotated[
        bool, typer.Option(help="Create two demo orgs with a user each.")
    ] = False,
) -> None:
    """Serve the HTTP API, migrating the schema first."""
    import uvicorn

    from orgsafe.tenancy.demo import seed_demo
    from orgsafe.web.app import create_app

    check_listen(host, port)
    settings = Settings()
    target = migrated_target(settings)
    refuse_unsafe_database(settings, target)
    if demo:
        for line in seed_demo(target, f"http://{host}:{port}"):
            print(line)
    sys.stdout.flush()
    config = uvicorn.Config(
        create_app(settings, target),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
        # The standard loop, even where uvloop is installed: with it, guarded
        # requests cost about 10% more cpu here (bench/http_guard.py, docs/scaling.md).
        loop="asyncio",
    )
    settle_collector()
    GracefulServer(config).run()


def settle_collector() -> None:
    """The garbage collector's settings for a long-running service process.

    What start-up made (the CLI, Alembic, SQLAlchemy, the app) lives as long as
    the process: frozen, full collections no longer walk it, which otherwise
    stalled requests for tens of milliseconds. A request makes a few thousand
    short-lived objects; at the default threshold of 700 the youngest generation
    was collected several times per request. Process-wide, so it is done here
    rather than in the app, which other servers may host.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def check_listen(host: str, port: int) -> None:
    """Refuse an address that cannot be listened on before starting anything."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UsageError(f"--host {host!r}: not an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(f"--port {port} on {host}: {exc.strerror}") from None


def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON report.")
    ] = False,
) -> None:
    """Check roles, row security and org foreign keys; exit 1 on any failure."""
    quiet()
    from orgsafe.storage.doctor import examine

    failures = examine(resolve_target(Settings()))
    if as_json:
        report = {"ok": not failures, "failures": [vars(f) for f in failures]}
        print(json.dumps(report, indent=2))
    else:
        for failure in failures:
            print(f"FAILED {failure}")
        print(
            "doctor: all checks passed"
            if not failures
            else f"doctor: {len(failures)} failure(s)"
        )
    if failures:
        raise typer.Exit(1)


def refuse_unsafe_database(settings: Settings, target: DatabaseTarget) -> None:
    from orgsafe.logs import get_logger
    from orgsafe.storage.doctor import examine

    failures = examine(target)
    log = get_logger("orgsafe.web")
    for failure in failures:
        log.warning(
            "doctor_failure",
            check=failure.check,
            subject=failure.subject,
            detail=failure.detail,
        )
    if failures and settings.is_production:
        for failure in failures:
            print(f"FAILED {failure}", file=sys.stderr)
        raise RefusedError(
            f"refusing to serve in production: {len(failures)} doctor check(s) failed"
        )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending schema migration."""
    quiet()
    settings = Settings()
    revision = upgrade(
        resolve_target(settings), settings.app_password, settings.statement_timeout_ms
    )
    print(f"schema at revision {revision}")


@org_app.command("create")
def org_create(name: Annotated[str, typer.Argument(help="The org's name.")]) -> None:
    """Create an org and print its id."""
    quiet()
    target = migrated_target(Settings())
    print(accounts.create_org(target, name))


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    org: Annotated[
        list[str],
        typer.Option(
            help="An org the user belongs to; repeat it; the first is the default."
        ),
    ],
    role: Annotated[str, typer.Option(help="Role in each org.")] = "member",
) -> None:
    """Create a user; the password is read from standard input."""
    quiet()
    if role not in ("owner", "admin", "member"):
        raise UsageError(f"--role {role!r}: expected owner, admin or member")
    org_ids = [_org_option(value) for value in org]
    password = _read_password()
    target = migrated_target(Settings())
    user = accounts.create_user(target, email, password, org_ids, role)
    print(user.id)


def _org_option(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise UsageError(f"--org {raw!r}: not a uuid") from None


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no password on standard input")
    return line.rstrip("\r\n")
