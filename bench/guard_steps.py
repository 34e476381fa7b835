"""The guard's cost taken apart: the bare app with one step of the guard at a time.

    python bench/guard_steps.py [--turns N] [--seconds S] [--mix read|create]

(8 turns of 10 s and the read mix unless told; the other flags of
bench/http_guard.py apply too, but --rounds does not: turns take its place.)

Starts what bench/http_guard.py starts (the service, the bare app, the embedded
PostgreSQL and its data), then three more copies of the bare app. These connect
as the service's app role, so row security applies to them, and each runs one
step in the request's transaction before the customers statement:

    org      set_config of the org: what any guard with a statement of its own costs
    settle   guard_settle, the service's lean lookup (it must return the path's org)
    lookup   guard_lookup, the full lookup the service falls back to

The org still comes from the path and the session from a file, so what a step
adds is its statement and nothing of the service's Python. Each turn drives the
five versions in a rotated order, so that other load on the machine hits them
alike; the medians over the turns are printed, with the processor time per
request of the app and of PostgreSQL. The ratio is the median of each turn's
ratio to the bare run of that turn, and each cpu column is a median of its own,
so the parts need not add up to the total. docs/scaling.md reports a run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

# Sibling scripts, not a package: found through the script's own folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_guard as bench

STEPS = ("org", "settle", "lookup")
MIXES = {"read": ("g_read", "b_read"), "create": ("g_create", "b_create")}


def own_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--mix", choices=sorted(MIXES), default="read")
    parser.add_argument("--serve", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=Path, help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args()
    if known.turns < 1:
        sys.exit("error: --turns: must be at least 1")
    if any(arg.startswith("--rounds") for arg in rest):
        sys.exit("error: --rounds: not used here; give --turns instead")
    # The rest (--seconds, --connections, --pool-size...) are http_guard's own.
    sys.argv = [sys.argv[0], *rest]
    return known


# --- one step, served -----------------------------------------------------------


def make_step(name: str, tokens: dict[uuid.UUID, str]) -> Any:
    from orgsafe.config import Settings
    from orgsafe.tenancy import sessions

    idle = timedelta(minutes=Settings().session_idle_minutes)

    async def org(conn: Any, org_id: uuid.UUID) -> None:
        await sessions.set_local(conn, "app.org_id", org_id)

    async def settle(conn: Any, org_id: uuid.UUID) -> None:
        found = await sessions.settle(conn, tokens[org_id], idle)
        if found is None or found.org_id != org_id:
            raise RuntimeError("guard_settle did not settle the session's org")

    async def lookup(conn: Any, org_id: uuid.UUID) -> None:
        found = await sessions.lookup(conn, tokens[org_id], idle, preset_org=True)
        if found is None or found.preset_org_id != str(org_id):
            raise RuntimeError("guard_lookup did not preset the session's org")

    return {"org": org, "settle": settle, "lookup": lookup}[name]


def serve_step(own: argparse.Namespace) -> None:
    import bare_app

    from orgsafe.config import Settings

    tokens = {}
    for line in own.sessions.read_text().splitlines():
        org_id, token = line.split("\t")
        tokens[uuid.UUID(org_id)] = token
    step = make_step(own.serve, tokens)
    app = bare_app.make_app(os.environ["BARE_DATABASE_URL"], Settings(), step)
    bare_app.serve(app, own.port)


# --- the run --------------------------------------------------------------------


def start_step(
    args: argparse.Namespace,
    name: str,
    target: Any,
    files: dict[str, Path],
    bare: bench.Server,
    procs: bench.Processes,
) -> bench.Server:
    data_dir = files["sessions"].parent
    env = bench.service_env(args, data_dir)
    env["BARE_DATABASE_URL"] = target.app_url
    port = bench.free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", name]
    argv += ["--port", str(port), "--sessions", str(files["sessions"])]
    log = data_dir / f"step-{name}.log"
    pid = procs.start(bench.pinned(args.server_cpus, argv), env, log)
    bench.wait_ready(port, log)
    served_rows(port, files["b_read"])
    return bench.Server(port, pid, bare.postmaster_pid)


def served_rows(port: int, lines: Path) -> None:
    """A step that lost the org would serve empty pages without an error: check."""
    path = next(
        line.split("\t")[1] for line in lines.read_text().splitlines() if "?" in line
    )
    url = f"http://{bench.LOOPBACK}:{port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        if b'"items":[]' in response.read():
            sys.exit(f"error: the step on port {port} serves empty pages")


def main() -> None:
    own = own_args()
    if own.serve:
        serve_step(own)
        return
    signal.signal(signal.SIGTERM, bench.exit_on_signal)
    args = bench.parse_args()
    bench.setup_import_path(args.src)
    procs = bench.Processes()
    servers, files, target = bench.prepare(args, procs)
    for name in STEPS:
        servers[name] = start_step(args, name, target, files, servers["bare"], procs)
    guarded_lines, bare_lines = (files[f] for f in MIXES[own.mix])
    order = ["bare", *STEPS, "guarded"]
    results: dict[str, list[bench.Result]] = {name: [] for name in order}
    for name in order:  # warm up
        lines = guarded_lines if name == "guarded" else bare_lines
        bench.run_wrk(args, servers[name], lines, min(2.0, args.seconds))
    for turn in range(own.turns):
        print(f"turn {turn + 1} of {own.turns}", flush=True)
        shift = turn % len(order)
        for name in order[shift:] + order[:shift]:
            lines = guarded_lines if name == "guarded" else bare_lines
            result = bench.run_wrk(args, servers[name], lines, args.seconds)
            bench.report(name, result)
            results[name].append(result)
    print_table(results)


def print_table(results: dict[str, list[bench.Result]]) -> None:
    bare = results["bare"]
    # Medians, each of its own column: see the module's docstring.
    print(f"\n{'version':<10} {'req/s':>7} {'ratio':>6} {'cpu ms/req':>11}"
          f" {'app':>6} {'db':>6} {'errors':>7}")  # fmt: skip
    for name, runs in results.items():
        ratios = [run.rps / base.rps for run, base in zip(runs, bare, strict=True)]
        app = statistics.median(run.app_cpu * 1000 / run.rps for run in runs)
        db = statistics.median(run.db_cpu * 1000 / run.rps for run in runs)
        print(
            f"{name:<10} {statistics.median(r.rps for r in runs):7.0f}"
            f" {statistics.median(ratios):6.3f}"
            f" {statistics.median(r.cpu_ms for r in runs):11.3f}"
            f" {app:6.3f} {db:6.3f} {sum(r.errors for r in runs):7d}"
        )


if __name__ == "__main__":
    main()
