"""Cpu per request, guarded against bare: for comparing two versions of the guard.

    python bench/guard_cost.py [--seconds S] [--rounds N] [--src DIR]

Same set-up as bench/http_guard.py, but only the read and create mixes, in
alternating rounds, and reports the medians of the cpu time that the app and
PostgreSQL spend per request. On a machine that other work keeps busy this
moves far less than requests per second do, so it is the figure to compare
patches with; http_guard.py gives the figures the targets are about.
"""

from __future__ import annotations

import signal
import statistics
import sys
from pathlib import Path

# A sibling script, not a package: found through the script's own folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_guard as bench

RUNS = (
    ("read", "guarded", "g_read"),
    ("bare_read", "bare", "b_read"),
    ("create", "guarded", "g_create"),
    ("bare_create", "bare", "b_create"),
)


def main() -> None:
    signal.signal(signal.SIGTERM, bench.exit_on_signal)
    args = bench.parse_args()
    bench.setup_import_path(args.src)
    servers, files, _ = bench.prepare(args, bench.Processes())
    for side, lines in (("guarded", "g_read"), ("bare", "b_read")):
        bench.run_wrk(args, servers[side], files[lines], 2)  # warm up
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in RUNS}
    for _ in range(args.rounds):
        for name, side, lines in RUNS:
            result = bench.run_wrk(args, servers[side], files[lines], args.seconds)
            bench.report(name, result)
            cpu[name].append(result.cpu_ms)
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"source: {args.src}")
    for kind in ("read", "create"):
        guarded, bare = medians[kind], medians[f"bare_{kind}"]
        print(
            f"{kind:<7} cpu per request: guarded {guarded:.2f} ms, bare {bare:.2f} ms,"
            f" bare/guarded {bare / guarded:.3f}"
        )


if __name__ == "__main__":
    main()
