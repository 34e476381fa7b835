"""What the tenancy guard costs over HTTP: the guarded service against a bare one.

    python bench/http_guard.py [--seconds S] [--connections C] [--src DIR]

Starts the embedded PostgreSQL in a temporary data folder, the service
(`python -m orgsafe serve`) and bench/bare_app.py (the same SQL with no session,
org setting or row-level security) on loopback ports, loads 3 orgs x 10,000
customers, logs one user into each org, then drives both with wrk (a separate
process) through bench/load.lua:

    ceiling   GET /healthz, which touches no database: the most this stack serves
    read      half pages of customers, half single customers, orgs interleaved
    create    POST one customer
    half      the guarded read mix paced to half of its measured peak, with
              random (exponential) pauses, as independent clients would send it

With 2 or more cores the server side (service or bare app, and PostgreSQL) is
pinned to --server-cpus and wrk to --load-cpus, so the generator never takes the
server's core. Every run is bounded by --seconds; nothing leaves the machine.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PASSWORD = "bench password 1234"
LOOPBACK = "127.0.0.1"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--seconds", type=float, default=10.0, help="length of each measured run")
    add("--rounds", type=int, default=1, help="rounds of runs; medians are kept")
    add("--connections", type=int, default=32, help="open connections per run")
    add("--orgs", type=int, default=3)
    add("--customers", type=int, default=10_000, help="customers per org")
    add("--page-size", type=int, default=20, help="limit of the page reads")
    add("--pool-size", type=int, default=10, help="pool max size, both apps")
    add("--src", type=Path, default=ROOT / "src", help="orgsafe source to serve")
    add("--server-cpus", default="0", help="cpus for the apps and PostgreSQL")
    add("--load-cpus", default="1", help="cpus for wrk")
    args = parser.parse_args()
    args.src = args.src.resolve()
    if (os.cpu_count() or 1) < 2:
        args.server_cpus = args.load_cpus = ""
    return args


def setup_import_path(src: Path) -> None:
    # The bench process uses the same orgsafe as the service it measures.
    sys.path.insert(0, str(src))


# --- processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def pinned(cpus: str, argv: list[str]) -> list[str]:
    if not cpus or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", cpus, *argv]


def pin_tree(pid: int, cpus: str) -> None:
    """Pin a running process and its children (PostgreSQL's backends)."""
    if not cpus:
        return
    wanted = {int(cpu) for cpu in cpus.split(",")}
    for child in [pid, *children(pid)]:
        try:
            os.sched_setaffinity(child, wanted)
        except ProcessLookupError:
            pass


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in found.read_text().split()] if found.exists() else []


class Processes:
    """Subprocesses stopped at exit, whatever happens in between; then the
    database they used, then its folder, in that order."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []
        self.data_dir: Path | None = None
        atexit.register(self.stop_all)

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running.append(proc)
        return proc.pid

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.data_dir is not None:
            stop_database(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)


def stop_database(data_dir: Path) -> None:
    """Stop the embedded server if its last holder left it running.

    Normally the service, the last process attached, stops it on exit; one that
    was killed cannot, and removing the folder under a live server would leave
    it running with no way to reach it.
    """
    try:
        pid = postmaster_pid(data_dir)
        os.kill(pid, signal.SIGINT)  # fast shutdown
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def wait_ready(port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    # The log lives in the data folder, which is removed at exit: show its end.
    tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
    sys.exit(f"error: no answer on port {port} in {timeout} s; {log.name}:\n{tail}")


# --- data ---------------------------------------------------------------------


@dataclass
class Org:
    id: uuid.UUID
    cookie: str
    customer_ids: list[uuid.UUID]


def start_database(data_dir: Path) -> Any:
    from orgsafe.config import Settings
    from orgsafe.storage.embedded import start_embedded

    return start_embedded(Settings(data_dir=data_dir))


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def load_orgs(target: Any, args: argparse.Namespace, base: str) -> list[Org]:
    from orgsafe.storage import connect
    from orgsafe.tenancy import accounts

    orgs = []
    for n in range(args.orgs):
        org = accounts.create_org(target, f"Bench org {n}")
        email = f"bench{n}@example.test"
        accounts.create_user(target, email, PASSWORD, [org])
        with connect(target.admin_url, autocommit=True) as conn:
            ids = insert_customers(conn, org, args.customers)
        orgs.append(Org(org, login(base, email), ids))
    with connect(target.admin_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return orgs


def insert_customers(conn: Any, org: uuid.UUID, count: int) -> list[uuid.UUID]:
    # One statement as the admin role: row security does not apply to it.
    conn.execute(
        "INSERT INTO customers (org_id, name, email, created_at, updated_at)"
        " SELECT %s, 'Customer ' || g, 'c' || g || '@example.test',"
        " now() - g * interval '1 second', now()"
        " FROM generate_series(1, %s) g",
        (org, count),
    )
    rows = conn.execute(
        "SELECT id FROM customers WHERE org_id = %s ORDER BY random() LIMIT 1000",
        (org,),
    ).fetchall()
    return [row[0] for row in rows]


def login(base: str, email: str) -> str:
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"{base}/api/auth/login",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = response.headers["Set-Cookie"]
    return str(cookie.split(";", 1)[0])


# --- request files for wrk ----------------------------------------------------


def guarded_paths(org: Org) -> dict[str, str]:
    # No org in the path: the service takes it from the session in the cookie.
    return {"list": "/api/customers", "one": "/api/customers/", "new": "/api/customers"}


def bare_paths(org: Org) -> dict[str, str]:
    prefix = f"/bare/orgs/{org.id}/customers"
    return {"list": prefix, "one": prefix + "/", "new": prefix}


def read_lines(orgs: list[Org], guarded: bool, page: int) -> list[str]:
    lines = []
    for n in range(3000):
        org = orgs[n % len(orgs)]
        paths = guarded_paths(org) if guarded else bare_paths(org)
        cookie = org.cookie if guarded else ""
        if (n // len(orgs)) % 2 == 0:
            path = f"{paths['list']}?limit={page}"
        else:
            path = paths["one"] + str(random.choice(org.customer_ids))
        lines.append(f"GET\t{path}\t{cookie}\t")
    return lines


def create_lines(orgs: list[Org], guarded: bool) -> list[str]:
    lines = []
    for n in range(3000):
        org = orgs[n % len(orgs)]
        path = (guarded_paths(org) if guarded else bare_paths(org))["new"]
        body = json.dumps({"name": f"Bench {n}", "email": f"b{n}@example.test"})
        lines.append(f"POST\t{path}\t{org.cookie if guarded else ''}\t{body}")
    return lines


def write_lines(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / f"{name}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- measuring ----------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu: float
    load_cpu: float
    app_cpu: float
    db_cpu: float

    @property
    def cpu_ms(self) -> float:
        """Cpu time of the app and PostgreSQL per request: blind to other load."""
        return (self.app_cpu + self.db_cpu) * 1000 / self.rps if self.rps else 0.0


def cpu_times() -> dict[str, tuple[int, int]]:
    """Busy and total jiffies of each cpu."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(v) for v in fields]
            idle = values[3] + values[4]
            times[name[3:]] = (sum(values) - idle, sum(values))
    return times


def busy(before: dict[str, tuple[int, int]], cpus: str) -> float:
    after = cpu_times()
    chosen = cpus.split(",") if cpus else list(after)
    used = sum(after[c][0] - before[c][0] for c in chosen)
    total = sum(after[c][1] - before[c][1] for c in chosen)
    return used / total if total else 0.0


def process_cpu(pids: list[int]) -> float:
    """Seconds of cpu used so far by these processes."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """The processes serving one port: the app, and PostgreSQL's backends."""

    port: int
    app_pid: int
    postmaster_pid: int

    def cpu(self) -> tuple[float, float]:
        return process_cpu([self.app_pid]), process_cpu(children(self.postmaster_pid))


def run_wrk(
    args: argparse.Namespace,
    server: Server,
    lines: Path,
    seconds: float,
    pause: int = 0,
) -> Result:
    threads = max(1, len(args.load_cpus.split(",")))
    argv = pinned(
        args.load_cpus,
        ["wrk", f"-t{threads}", f"-c{args.connections}", f"-d{seconds:g}s",
         "--timeout", "5s", "-s", str(BENCH / "load.lua"),
         f"http://{LOOPBACK}:{server.port}", "--", str(lines), str(pause)],
    )  # fmt: skip
    before, rusage, start = cpu_times(), children_cpu(), time.monotonic()
    app_before, db_before = server.cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - start
    app_after, db_after = server.cpu()
    if done.returncode != 0:
        sys.exit(f"error: wrk failed: {done.stderr.strip()}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(
        rps=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        errors=summary["status_errors"] + summary["socket_errors"],
        server_cpu=busy(before, args.server_cpus),
        load_cpu=(children_cpu() - rusage) / wall,
        app_cpu=(app_after - app_before) / wall,
        db_cpu=(db_after - db_before) / wall,
    )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(name: str, result: Result) -> None:
    print(
        f"{name:<16} {result.rps:8.0f} req/s   p50 {result.p50_ms:6.2f} ms"
        f"   p99 {result.p99_ms:6.2f} ms   max {result.max_ms:7.2f} ms"
        f"   cpu: server {result.server_cpu:4.0%} (app {result.app_cpu:4.0%}"
        f" db {result.db_cpu:4.0%}, {result.cpu_ms:.2f} ms/req)"
        f"   wrk {result.load_cpu:4.0%}"
        + (f"   ERRORS {result.errors}" if result.errors else ""),
        flush=True,
    )


# --- the run ------------------------------------------------------------------


def service_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGSAFE_")}
    env.pop("DATABASE_URL", None)
    env.update(
        # Whatever PYTHONPATH was given comes after the source under test.
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(args.src), env.get("PYTHONPATH")])
        ),
        ORGSAFE_DATA_DIR=str(data_dir),
        ORGSAFE_POOL_MAX_SIZE=str(args.pool_size),
    )
    return env


def start_apps(
    args: argparse.Namespace, data_dir: Path, target: Any, procs: Processes
) -> tuple[Server, Server]:
    env = service_env(args, data_dir)
    postmaster = postmaster_pid(data_dir)
    port = free_port()
    serve = [sys.executable, "-m", "orgsafe", "serve", "--port", str(port)]
    pid = procs.start(pinned(args.server_cpus, serve), env, data_dir / "service.log")
    wait_ready(port, data_dir / "service.log")
    guarded = Server(port, pid, postmaster)
    env["BARE_DATABASE_URL"] = target.admin_url
    port = free_port()
    bare_argv = [sys.executable, str(BENCH / "bare_app.py"), "--port", str(port)]
    pid = procs.start(pinned(args.server_cpus, bare_argv), env, data_dir / "bare.log")
    wait_ready(port, data_dir / "bare.log")
    return guarded, Server(port, pid, postmaster)


def describe_machine(args: argparse.Namespace) -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "server_cpus": args.server_cpus or "all",
        "load_cpus": args.load_cpus or "all",
    }


def background_load() -> float:
    """How busy the machine is with nothing of ours running: others skew figures."""
    before = cpu_times()
    time.sleep(2)
    return busy(before, "")


# Guarded and bare runs alternate, so that a change in the machine's other load
# hits both sides alike.
PHASES = (
    ("ceiling", "guarded", "health"),
    ("bare_ceiling", "bare", "health"),
    ("read", "guarded", "g_read"),
    ("bare_read", "bare", "b_read"),
    ("create", "guarded", "g_create"),
    ("bare_create", "bare", "b_create"),
)


def measure_round(
    args: argparse.Namespace, servers: dict[str, Server], files: dict[str, Path]
) -> dict[str, Result]:
    results = {}
    for name, side, lines in PHASES:
        results[name] = run_wrk(args, servers[side], files[lines], args.seconds)
        report(name, results[name])
    return results


Rounds = list[dict[str, Result]]


def measure(
    args: argparse.Namespace, servers: dict[str, Server], files: dict[str, Path]
) -> tuple[dict[str, Result], Rounds]:
    for side, lines in (("guarded", "g_read"), ("bare", "b_read")):
        run_wrk(args, servers[side], files[lines], min(2.0, args.seconds))  # warm up
    rounds: Rounds = []
    for n in range(args.rounds):
        print(f"round {n + 1} of {args.rounds}", flush=True)
        rounds.append(measure_round(args, servers, files))
    results = {name: median(rounds, name) for name, _, _ in PHASES}
    half_rate = results["read"].rps / 2
    # Each connection waits this long between its requests: about half the peak.
    pause = round(args.connections * 1000 / half_rate)
    half = run_wrk(args, servers["guarded"], files["g_read"], args.seconds, pause)
    report("half_read", half)
    results["half_read"] = half
    return results, rounds


def median(rounds: Rounds, name: str) -> Result:
    """The run of median rate among the rounds (of two middle ones, the faster).

    Each kind is ranked on its own, so a guarded median and a bare median may
    come from different rounds; `paired_ratios` keeps the pairs.
    """
    ranked = sorted((r[name] for r in rounds), key=lambda result: result.rps)
    return ranked[len(ranked) // 2]


def paired_ratios(rounds: Rounds, kind: str) -> list[float]:
    """Guarded over bare within each round: the two runs came one after the other,
    so a change in the machine's other load between rounds moves both alike."""
    return [round(r[kind].rps / r[f"bare_{kind}"].rps, 3) for r in rounds]


def summarise(
    args: argparse.Namespace, results: dict[str, Result], rounds: Rounds
) -> dict[str, Any]:
    read, bare_read = results["read"], results["bare_read"]
    create, bare_create = results["create"], results["bare_create"]
    return {
        "read_rps": round(read.rps),
        "bare_read_rps": round(bare_read.rps),
        "read_ratio": round(read.rps / bare_read.rps, 3),
        "create_rps": round(create.rps),
        "bare_create_rps": round(bare_create.rps),
        "create_ratio": round(create.rps / bare_create.rps, 3),
        "read_ratio_rounds": paired_ratios(rounds, "read"),
        "create_ratio_rounds": paired_ratios(rounds, "create"),
        "p99_ms_half_load": round(results["half_read"].p99_ms, 2),
        # Bare over guarded cpu per request: the throughput ratio that a core
        # free of other work would show.
        "read_cpu_ratio": round(bare_read.cpu_ms / read.cpu_ms, 3),
        "create_cpu_ratio": round(bare_create.cpu_ms / create.cpu_ms, 3),
        "half_load_rps": round(results["half_read"].rps),
        "ceiling_rps": round(results["ceiling"].rps),
        "errors": sum(r.errors for r in results.values()),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "page_size": args.page_size,
        "pool_size": args.pool_size,
        "machine": describe_machine(args),
        "runs": {
            name: {**asdict(r), "cpu_ms": r.cpu_ms} for name, r in results.items()
        },
    }


def request_files(folder: Path, orgs: list[Org], page: int) -> dict[str, Path]:
    return {
        "health": write_lines(folder, "health", ["GET\t/healthz\t\t"]),
        "g_read": write_lines(folder, "g_read", read_lines(orgs, True, page)),
        "b_read": write_lines(folder, "b_read", read_lines(orgs, False, page)),
        "g_create": write_lines(folder, "g_create", create_lines(orgs, True)),
        "b_create": write_lines(folder, "b_create", create_lines(orgs, False)),
        # Each org's session cookie, for bench/guard_steps.py.
        "sessions": write_lines(folder, "sessions", session_lines(orgs)),
    }


def session_lines(orgs: list[Org]) -> list[str]:
    return [f"{org.id}\t{org.cookie.split('=', 1)[1]}" for org in orgs]


def make_data_dir(procs: Processes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="orgsafe-bench-"))
    # As root the embedded server runs as another user, who must enter the folder.
    folder.chmod(0o755)
    # Removed at exit, once the servers and the database have stopped.
    procs.data_dir = folder
    return folder


def prepare(args: argparse.Namespace, procs: Processes) -> tuple[Any, ...]:
    """The database, both apps and the request files, ready to be driven.

    Returns the two servers, the request files and the database target.
    """
    data_dir = make_data_dir(procs)
    target = start_database(data_dir)
    pin_tree(postmaster_pid(data_dir), args.server_cpus)
    guarded, bare = start_apps(args, data_dir, target, procs)
    orgs = load_orgs(target, args, f"http://{LOOPBACK}:{guarded.port}")
    # Backends started since the first pinning inherit it; this catches the rest.
    pin_tree(postmaster_pid(data_dir), args.server_cpus)
    files = request_files(data_dir, orgs, args.page_size)
    return {"guarded": guarded, "bare": bare}, files, target


def exit_on_signal(signum: int, _frame: object) -> None:
    # Through sys.exit, so the atexit handlers stop the servers and the database.
    sys.exit(f"stopped by signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, exit_on_signal)
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("error: wrk not found; install it (Debian: apt-get install wrk)")
    setup_import_path(args.src)
    print(f"machine: {describe_machine(args)}", flush=True)
    print(f"other load on the machine before the run: {background_load():.0%}")
    servers, files, _ = prepare(args, Processes())
    summary = summarise(args, *measure(args, servers, files))
    print_ratios(summary)
    print(json.dumps(summary))


def print_ratios(summary: dict[str, Any]) -> None:
    print(
        f"read ratio {summary['read_ratio']:.3f} (target 0.75)   "
        f"create ratio {summary['create_ratio']:.3f} (target 0.70)   "
        f"p99 at half load {summary['p99_ms_half_load']:.2f} ms (target 25)\n"
        f"cpu per request, bare/guarded: read {summary['read_cpu_ratio']:.3f}"
        f"   create {summary['create_cpu_ratio']:.3f}\n"
        f"ratio in each round: read {summary['read_ratio_rounds']}"
        f"   create {summary['create_ratio_rounds']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
