"""PgBouncer in transaction pooling mode, in front of the test database.

It listens on a loopback port only and lets any listed user in without a password
(auth_type trust): fine for a test on one machine, never for a deployment. The
server side keeps few connections, so that the transactions of many clients take
turns on the same PostgreSQL sessions, which is what a leaked setting would need.

Skipped when the `pgbouncer` binary is absent (Debian: apt-get install pgbouncer).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import conninfo

from orgsafe.storage import DatabaseTarget
from tests.plugins.database import APP_PASSWORD

SERVER_CONNECTIONS = 4
START_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Bouncer:
    port: int
    dbname: str
    log: Path

    def url(self, user: str, password: str | None = None) -> str:
        params = {"host": "127.0.0.1", "port": str(self.port), "dbname": self.dbname}
        params["user"] = user
        if password:
            params["password"] = password
        return conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def pgbouncer(target: DatabaseTarget) -> Iterator[Bouncer]:
    binary = find_binary()
    if binary is None:
        missing = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("CI"):
            # .ci/run installs it: in CI a missing pooler is a failure, not a skip.
            pytest.fail(missing)
        # Outside CI, a developer without the package still runs everything else.
        pytest.skip(missing)
    # Not under pytest's temporary folder: as root, PgBouncer switches to a user
    # who may not enter it.
    folder = Path(tempfile.mkdtemp(prefix="orgsafe-pgbouncer-"))
    server = conninfo.conninfo_to_dict(target.admin_url)
    port = free_port()
    config = write_config(folder, server, port, users(target))
    process = start(binary, config, run_as(server), folder)
    try:
        wait_listening(port, process, folder / "pgbouncer.log")
        yield Bouncer(port, str(server["dbname"]), folder / "pgbouncer.log")
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def find_binary() -> str | None:
    # Debian puts it in /usr/sbin, which a plain user's PATH may lack.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def users(target: DatabaseTarget) -> dict[str, str]:
    """Who may log in through PgBouncer, with the password it uses upstream."""
    admin = conninfo.conninfo_to_dict(target.admin_url)
    return {
        str(admin.get("user") or "postgres"): str(admin.get("password") or ""),
        target.app_role: APP_PASSWORD,
    }


def write_config(
    folder: Path, server: dict[str, object], port: int, logins: dict[str, str]
) -> Path:
    quoted = "\n".join(f'"{user}" "{password}"' for user, password in logins.items())
    (folder / "users.txt").write_text(quoted + "\n")
    upstream = f"host={server.get('host') or '127.0.0.1'}"
    upstream += f" port={server.get('port') or 5432} dbname={server['dbname']}"
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n{server['dbname']} = {upstream}\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    return config


def run_as(server: dict[str, object]) -> str | None:
    """PgBouncer refuses to run as root: the user it should switch to, if any."""
    if os.geteuid() != 0:
        return None
    host = str(server.get("host") or "")
    # A Unix socket's folder admits its owner for sure; over TCP anyone will do.
    if host.startswith("/") and Path(host).exists():
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "nobody"


def start(
    binary: str, config: Path, user: str | None, folder: Path
) -> subprocess.Popen[bytes]:
    argv = [binary, str(config)]
    if user is not None:
        folder.chmod(0o755)
        for path in [folder, *folder.iterdir()]:
            shutil.chown(path, user)
        argv[1:1] = ["-u", user]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited at start: {detail[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"pgbouncer not listening on port {port}")
