"""Benchmark: the naive clean-up sequence against `orgsafe integrity run`.

Builds a legacy customers table (text org_id with orphans, empty, blank,
padded, upper-case and malformed values) of --rows rows, then, each on a fresh
copy and beside a writer inserting and updating at a fixed rate, runs

  (a) the naive SQL sequence teams type by hand: null what does not match,
      ALTER ... TYPE uuid, ADD FOREIGN KEY NOT VALID, count, VALIDATE;
  (b) `orgsafe integrity run --yes`.

For each it prints the total time, the writer's p50 / p99 / longest wait,
failed writes and lost rows and values; then the ratios. The last line is one
JSON object. Usage:

    python bench/runbook.py --rows 1000000 [--database-url URL] [--rate 100]

Without --database-url (or DATABASE_URL) the embedded server is used. The
databases it creates are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

ORGS = 200
REF = "customers.org_id=orgs.id"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# Shares of the legacy rows, in per mille; the rest point at a real org.
LEGACY = """
CREATE TABLE orgs (id uuid PRIMARY KEY, name text NOT NULL);
INSERT INTO orgs SELECT gen_random_uuid(), 'org ' || g
  FROM generate_series(1, {orgs}) g;
CREATE TABLE customers (id bigint PRIMARY KEY, org_id text, name text NOT NULL,
                        updated_at timestamptz NOT NULL DEFAULT now());
WITH o AS (SELECT array_agg(id::text) AS ids FROM orgs)
INSERT INTO customers (id, org_id, name)
SELECT g,
  CASE
    WHEN g % 1000 < 10 THEN gen_random_uuid()::text
    WHEN g % 1000 < 15 THEN ''
    WHEN g % 1000 < 18 THEN '   '
    WHEN g % 1000 < 21 THEN ' ' || o.ids[1 + g % {orgs}] || ' '
    WHEN g % 1000 < 30 THEN upper(o.ids[1 + g % {orgs}])
    WHEN g % 1000 < 33 THEN 'legacy_' || g
    WHEN g % 1000 < 35 THEN NULL
    ELSE o.ids[1 + g % {orgs}]
  END,
  'customer ' || g
FROM generate_series(1, {rows}) g, o;
CREATE TABLE bench_original AS SELECT id, org_id FROM customers;
"""

NAIVE = [
    "UPDATE customers SET org_id = NULL WHERE org_id IS NOT NULL AND "
    f"(org_id !~ '{UUID_RE}' OR NOT EXISTS "
    "(SELECT 1 FROM orgs WHERE orgs.id::text = customers.org_id))",
    "ALTER TABLE customers ALTER COLUMN org_id TYPE uuid USING org_id::uuid",
    "ALTER TABLE customers ADD CONSTRAINT customers_org_id_fkey FOREIGN KEY (org_id) "
    "REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE RESTRICT NOT VALID",
    "SELECT count(*) FROM customers c WHERE org_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM orgs o WHERE o.id = c.org_id)",
    "ALTER TABLE customers VALIDATE CONSTRAINT customers_org_id_fkey",
]


@dataclass
class Writer:
    """Inserts new customers and updates existing ones at a fixed rate."""

    url: str
    rate: float
    rows: int
    org_ids: list[str]
    waits: list[float] = field(default_factory=list)
    moments: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    inserted: dict[int, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        # Unprepared statements, as an ORM sends them: the server infers each
        # parameter's type from the column, before and after the retype.
        with psycopg.connect(self.url, autocommit=True, prepare_threshold=None) as conn:
            next_at, key = time.monotonic(), self.rows
            while not self.stop.is_set():
                key += 1
                self._insert(conn, key)
                self._update(conn, key)
                next_at += 2 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _timed(
        self, conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]
    ) -> bool:
        started = time.monotonic()
        try:
            conn.execute(query, params)
            return True
        except psycopg.Error as exc:
            self.failures.append(str(exc).splitlines()[0])
            return False
        finally:
            self.waits.append(time.monotonic() - started)
            self.moments.append(started)

    def _insert(self, conn: psycopg.Connection[Any], key: int) -> None:
        org = self.org_ids[key % len(self.org_ids)]
        query = "INSERT INTO customers (id, org_id, name) VALUES (%s, %s, 'new')"
        if self._timed(conn, query, (key, org)):
            self.inserted[key] = org

    def _update(self, conn: psycopg.Connection[Any], key: int) -> None:
        target = 1 + (key * 7919) % self.rows
        query = (
            "UPDATE customers SET name = 'touched', updated_at = now() WHERE id = %s"
        )
        self._timed(conn, query, (target,))


def server_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from orgsafe.config import Settings
    from orgsafe.storage import resolve_target
    from orgsafe.storage.database import with_user

    return with_user(resolve_target(Settings()).admin_url, "postgres", None, "postgres")


def database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


def create(url: str, name: str, template: str | None = None) -> None:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(
            statement, sql.Identifier(template)
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def drop(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


def build_template(url: str, name: str, rows: int) -> list[str]:
    create(url, name)
    started = time.monotonic()
    with psycopg.connect(database(url, name), autocommit=True) as conn:
        conn.execute(LEGACY.format(rows=rows, orgs=ORGS))
        conn.execute("VACUUM ANALYZE customers")
        conn.execute("VACUUM ANALYZE orgs")
        orgs = [str(r[0]) for r in conn.execute("SELECT id FROM orgs ORDER BY id")]
    print(f"legacy table of {rows} rows built in {time.monotonic() - started:.1f}s")
    return orgs


def naive(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in NAIVE:
            conn.execute(statement)


def orgsafe(url: str, extra: list[str]) -> None:
    """Run the runbook in its own process, as an operator would, and show its steps."""
    command = [
        sys.executable,
        "-c",
        "from orgsafe.cli import main; main()",
        "integrity",
        "run",
        "--database-url",
        url,
        "--ref",
        REF,
        "--yes",
        "--json",
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"orgsafe integrity run failed ({done.returncode}): {done.stderr}"
        )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    steps = ", ".join(
        f"{r['step']} {r.get('seconds', 0):.2f}s" for r in report["results"]
    )
    print(f"         orgsafe steps: {steps}")


def measure(
    label: str, url: str, rows: int, rate: float, orgs: list[str], action: Any
) -> dict[str, Any]:
    writer = Writer(url, rate, rows, orgs)
    thread = threading.Thread(target=writer.run)
    thread.start()
    time.sleep(1.0)  # the writer is in its stride before the clean-up begins
    mark = len(writer.waits)
    started = time.monotonic()
    action()
    total = time.monotonic() - started
    waits = writer.waits[mark:]
    time.sleep(0.5)
    writer.stop.set()
    thread.join()
    lost_rows, lost_values = losses(url, writer.inserted)
    result = {
        "label": label,
        "total_s": round(total, 2),
        "p50_ms": round(statistics.median(waits) * 1000, 2) if waits else 0.0,
        "p99_ms": round(percentile(waits, 0.99) * 1000, 2) if waits else 0.0,
        "max_wait_ms": round(max(waits) * 1000, 1) if waits else 0.0,
        "writes": len(waits),
        "failed_writes": len(writer.failures),
        "lost_rows": lost_rows,
        "lost_values": lost_values,
    }
    print(
        f"{label:8} total {result['total_s']:8.2f}s  writer p50 "
        f"{result['p50_ms']:7.2f}ms "
        f"p99 {result['p99_ms']:8.2f}ms  longest {result['max_wait_ms']:8.1f}ms  "
        f"writes {result['writes']}  failed {result['failed_writes']}  "
        f"lost rows {lost_rows}  lost values {lost_values}"
    )
    if writer.failures:
        print(f"         first failed write: {writer.failures[0]}")
    moments = writer.moments[mark : mark + len(waits)]
    slowest = sorted(zip(waits, moments, strict=True), reverse=True)[:3]
    shown = ", ".join(f"{w * 1000:.0f}ms at +{m - started:.1f}s" for w, m in slowest)
    print(f"         slowest writes: {shown}")
    return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def losses(url: str, inserted: dict[int, str]) -> tuple[int, int]:
    """Rows gone, and non-blank values neither kept (converted) nor quarantined."""
    with psycopg.connect(url, autocommit=True) as conn:
        kept = conn.execute(
            "SELECT to_regclass('orgsafe_integrity.quarantine')"
        ).fetchone()
        quarantined = (
            "OR EXISTS (SELECT 1 FROM orgsafe_integrity.quarantine q "
            "WHERE q.row_key->>'id' = o.id::text AND q.original_value = o.org_id)"
            if kept and kept[0]
            else ""
        )
        lost_rows, lost_values = conn.execute(
            "SELECT count(*) FILTER (WHERE c.id IS NULL), "
            "count(*) FILTER (WHERE c.id IS NOT NULL AND "
            "btrim(o.org_id) <> '' AND NOT ("
            "  c.org_id::text IS NOT DISTINCT FROM lower(btrim(o.org_id)) "
            f"  {quarantined})) "
            "FROM bench_original o LEFT JOIN customers c ON c.id = o.id"
        ).fetchone() or (0, 0)
        found = dict(
            conn.execute(
                "SELECT id, org_id::text FROM customers WHERE id = ANY(%s)",
                (list(inserted),),
            ).fetchall()
        )
    missing = sum(1 for key in inserted if key not in found)
    changed = sum(
        1 for key, org in inserted.items() if found.get(key) not in (org, None)
    )
    nulled = sum(1 for key in inserted if key in found and found[key] is None)
    return int(lost_rows) + missing, int(lost_values) + changed + nulled


def gate(url: str) -> int:
    """`orgsafe integrity gate`'s exit code: 1 while offenders exist, else 0."""
    command = [
        sys.executable,
        "-c",
        "from orgsafe.cli import main; main()",
        "integrity",
        "gate",
        "--database-url",
        url,
        "--ref",
        REF,
        "--json",
    ]
    return subprocess.run(command, capture_output=True, check=False).returncode


def orgsafe_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--batch-size",
        str(args.batch_size),
        "--lock-timeout",
        args.lock_timeout,
        "--retries",
        str(args.retries),
        "--pause-ms",
        str(args.pause_ms),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second")
    parser.add_argument("--database-url", default=None, help="a superuser URL")
    parser.add_argument("--batch-size", type=int, default=2000)
    # Every lock orgsafe waits for queues the writer behind it for as long:
    # the writer's longest wait is bounded by about this, hence 50ms here.
    parser.add_argument("--lock-timeout", default="50ms")
    parser.add_argument("--retries", type=int, default=20)
    parser.add_argument("--pause-ms", type=int, default=0)
    args = parser.parse_args()
    url = server_url(args.database_url)
    suffix = secrets.token_hex(3)
    names = {k: f"bench_{k}_{suffix}" for k in ("template", "naive", "orgsafe")}
    try:
        orgs = build_template(url, names["template"], args.rows)
        for key in ("naive", "orgsafe"):
            create(url, names[key], names["template"])
        naive_url = database(url, names["naive"])
        orgsafe_url = database(url, names["orgsafe"])
        gate_before = gate(orgsafe_url)
        a = measure(
            "naive", naive_url, args.rows, args.rate, orgs, lambda: naive(naive_url)
        )
        b = measure(
            "orgsafe",
            orgsafe_url,
            args.rows,
            args.rate,
            orgs,
            lambda: orgsafe(orgsafe_url, orgsafe_flags(args)),
        )
        gate_after = gate(orgsafe_url)
    finally:
        for name in names.values():
            drop(url, name)
    ratio = b["total_s"] / a["total_s"] if a["total_s"] else 0.0
    wait_ratio = b["max_wait_ms"] / a["max_wait_ms"] if a["max_wait_ms"] else 0.0
    print(
        f"ratios: time {ratio:.2f}x, longest writer wait "
        f"{wait_ratio:.3f}x (orgsafe/naive)"
    )
    print(f"gate on the orgsafe copy: exit {gate_before} before, {gate_after} after")
    print(
        json.dumps(
            {
                "rows": args.rows,
                "rate": args.rate,
                "naive_s": a["total_s"],
                "orgsafe_s": b["total_s"],
                "time_ratio": round(ratio, 2),
                "max_wait_ms": b["max_wait_ms"],
                "p99_ms": b["p99_ms"],
                "failed_writes": b["failed_writes"],
                "lost_rows": b["lost_rows"],
                "lost_values": b["lost_values"],
                "gate_before": gate_before,
                "gate_after": gate_after,
                "naive": a,
                "orgsafe": b,
            }
        )
    )


if __name__ == "__main__":
    main()
