"""Two versions of the service against the bare app, on one database, in turns.

    python bench/guard_ab.py --a DIR --b DIR [--pairs 6] [--seconds 3]
                             [--mixes read,create]

DIR is a copy of `src/` (for example a `git worktree` of another commit). Both
versions serve the same embedded PostgreSQL and the same logged-in sessions,
beside bench/bare_app.py. Each pair of turns runs A, bare and B (then B, bare,
A) for every mix, so a change in the machine's other load hits all three
alike; each version's ratio to the bare run of its own turn is kept, and the
medians are printed. Use it to tell whether a change to the guarded path moves
the ratio; bench/http_guard.py gives the figures the targets are about.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from pathlib import Path

# A sibling script, not a package: found through the script's own folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_guard as bench

MIXES = {"read": ("g_read", "b_read"), "create": ("g_create", "b_create")}


def own_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--a", type=Path, required=True, help="source of version A")
    parser.add_argument("--b", type=Path, required=True, help="source of version B")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--mixes", default="read,create")
    known, rest = parser.parse_known_args()
    # The rest (--seconds, --connections, --pool-size...) are http_guard's own.
    sys.argv = [sys.argv[0], *rest, "--src", str(known.a)]
    unknown = set(known.mixes.split(",")) - set(MIXES)
    if unknown:
        sys.exit(f"error: --mixes: unknown mix {sorted(unknown)[0]!r}")
    return known


def start_b(
    args: argparse.Namespace, src: Path, a: bench.Server, procs: bench.Processes
) -> bench.Server:
    """Version B, attached to the database version A started."""
    env = dict(os.environ)
    for line in Path(f"/proc/{a.app_pid}/environ").read_text().split("\0"):
        if line.startswith("ORGSAFE_"):
            name, _, value = line.partition("=")
            env[name] = value
    env["PYTHONPATH"] = str(src.resolve())
    port = bench.free_port()
    log = Path(env["ORGSAFE_DATA_DIR"]) / "service-b.log"
    serve = [sys.executable, "-m", "orgsafe", "serve", "--port", str(port)]
    pid = procs.start(bench.pinned(args.server_cpus, serve), env, log)
    bench.wait_ready(port, log)
    return bench.Server(port, pid, a.postmaster_pid)


def main() -> None:
    signal.signal(signal.SIGTERM, bench.exit_on_signal)
    own = own_args()
    args = bench.parse_args()
    bench.setup_import_path(args.src)
    procs = bench.Processes()
    servers, files, _ = bench.prepare(args, procs)
    servers = {
        "A": servers["guarded"],
        "B": start_b(args, own.b, servers["guarded"], procs),
        "bare": servers["bare"],
    }
    mixes = own.mixes.split(",")
    for mix in mixes:  # warm up
        for side in servers:
            lines = MIXES[mix][1] if side == "bare" else MIXES[mix][0]
            bench.run_wrk(args, servers[side], files[lines], min(2.0, args.seconds))
    ratios: dict[tuple[str, str], list[float]] = {}
    for n in range(own.pairs):
        print(f"turn {n + 1} of {own.pairs}", flush=True)
        order = ("A", "bare", "B") if n % 2 == 0 else ("B", "bare", "A")
        for mix in mixes:
            runs = {}
            for side in order:
                lines = MIXES[mix][1] if side == "bare" else MIXES[mix][0]
                runs[side] = bench.run_wrk(
                    args, servers[side], files[lines], args.seconds
                )
                bench.report(f"{mix} {side}", runs[side])
            for side in ("A", "B"):
                ratio = runs[side].rps / runs["bare"].rps
                ratios.setdefault((mix, side), []).append(ratio)
    for (mix, side), values in ratios.items():
        print(
            f"{mix:<7} {side}: ratio to bare, median {statistics.median(values):.3f}"
            f" (from {min(values):.3f} to {max(values):.3f}, {len(values)} turns)"
        )


if __name__ == "__main__":
    main()
