"""Validation: gated on zero offenders, off the writers' path, resumable."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from tests.integrity.conftest import ORG_A, ORG_X, REF, Runner, execute, rows, value

ADD_KEY = (
    "ALTER TABLE customers ADD CONSTRAINT customers_org_id_fkey FOREIGN KEY (org_id) "
    "REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE RESTRICT NOT VALID"
)
VALID = "SELECT convalidated FROM pg_constraint WHERE conname = 'customers_org_id_fkey'"
CLI = [sys.executable, "-c", "from orgsafe.cli import main; main()", "integrity"]


def test_validate_refuses_while_offenders_remain_then_run_finishes_the_job(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url, f"INSERT INTO customers VALUES (30, '{ORG_X}', 'late')", ADD_KEY
    )

    refused = orgsafe(
        "validate", "--database-url", converted_url, "--ref", REF, "--yes"
    )

    assert refused.code == 1
    assert "1 offenders remain" in refused.err
    assert value(converted_url, VALID) is False
    assert orgsafe("gate", "--database-url", converted_url, "--ref", REF).code == 1

    again = orgsafe(
        "run", "--database-url", converted_url, "--ref", REF, "--yes", "--json"
    )
    gate_after = orgsafe("gate", "--database-url", converted_url, "--ref", REF)

    assert again.code == 0, again.err
    steps = {r["step"]: r for r in again.report["results"]}
    assert steps["constrain"]["action"] == "kept"
    assert steps["repair"]["changed"] == 1
    assert value(converted_url, VALID) is True
    assert value(converted_url, "SELECT org_id FROM customers WHERE id = 30") is None
    assert (
        value(converted_url, "SELECT original_value FROM orgsafe_integrity.quarantine")
        == ORG_X
    )
    assert gate_after.code == 0


def _waiting_for_lock(url: str) -> bool:
    return bool(
        value(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            "'orgsafe-integrity' AND wait_event_type = 'Lock'",
        )
    )


def test_a_row_slipping_in_before_validate_is_repaired_and_validation_retried(
    converted_url: str,
) -> None:
    execute(converted_url, ADD_KEY)
    blocker = psycopg.connect(converted_url)
    blocker.execute("LOCK TABLE customers IN SHARE UPDATE EXCLUSIVE MODE")
    command = [
        *CLI,
        "validate",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--lock-timeout",
        "300ms",
        "--retries",
        "20",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not _waiting_for_lock(converted_url) and time.monotonic() < deadline:
            time.sleep(0.02)
        # A legacy job with triggers off writes an orphan past the NOT VALID key.
        with psycopg.connect(converted_url, autocommit=True) as legacy:
            legacy.execute("SET session_replication_role = replica")
            legacy.execute(f"INSERT INTO customers VALUES (30, '{ORG_X}', 'late')")
    finally:
        blocker.rollback()
        blocker.close()
    _, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert "customers_org_id_fkey" in err and f"(org_id)=({ORG_X})" in err
    assert value(converted_url, VALID) is True
    assert value(converted_url, "SELECT org_id FROM customers WHERE id = 30") is None
    assert rows(
        converted_url,
        "SELECT row_key->>'id', original_value FROM orgsafe_integrity.quarantine",
    ) == [("30", ORG_X)]


def test_writers_keep_writing_during_constrain_and_validate(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        f"INSERT INTO customers SELECT g, '{ORG_A}', 'bulk' "
        "FROM generate_series(100, 50099) g",
    )
    stop, waits, errors = threading.Event(), [], []

    def write() -> None:
        with psycopg.connect(converted_url, autocommit=True) as conn:
            key = 100_000
            while not stop.is_set():
                key += 1
                started = time.monotonic()
                try:
                    conn.execute(
                        "INSERT INTO customers VALUES (%s, %s, 'w')", (key, ORG_A)
                    )
                    conn.execute(
                        "UPDATE customers SET name = 'u' WHERE id = %s",
                        (key % 5000 + 100,),
                    )
                except psycopg.Error as exc:
                    errors.append(str(exc))
                waits.append(time.monotonic() - started)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        added = orgsafe(
            "constrain", "--database-url", converted_url, "--ref", REF, "--yes"
        )
        checked = orgsafe(
            "validate", "--database-url", converted_url, "--ref", REF, "--yes"
        )
    finally:
        stop.set()
        writer.join()

    assert added.code == 0, added.err
    assert checked.code == 0, checked.err
    assert value(converted_url, VALID) is True
    assert errors == []
    assert len(waits) > 10
    assert max(waits) < 1.0


def test_a_role_statement_timeout_is_reported_and_overridden_for_the_step(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        f"INSERT INTO customers SELECT g, '{ORG_A}', 'bulk' "
        "FROM generate_series(100, 200099) g",
        ADD_KEY,
        "CREATE ROLE tg_migrator LOGIN",
        "ALTER TABLE customers OWNER TO tg_migrator",
        "ALTER TABLE orgs OWNER TO tg_migrator",
        "ALTER ROLE tg_migrator SET statement_timeout = '50ms'",
        "GRANT CREATE ON DATABASE "
        + value(converted_url, "SELECT current_database()")
        + " TO tg_migrator",
    )
    url = f"{converted_url} user=tg_migrator"
    try:
        too_short = orgsafe(
            "validate",
            "--database-url",
            url,
            "--ref",
            REF,
            "--yes",
            "--validate-timeout",
            "5ms",
        )
        enough = orgsafe("validate", "--database-url", url, "--ref", REF, "--yes")
    finally:
        execute(
            converted_url, "DROP OWNED BY tg_migrator CASCADE", "DROP ROLE tg_migrator"
        )

    assert "statement_timeout=50ms (user)" in too_short.out
    assert too_short.code == 3
    assert "cancelled by statement_timeout=5ms (57014)" in too_short.err
    assert enough.code == 0, enough.err


def test_validate_outside_the_window_is_refused_and_a_bad_window_is_bad_usage(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ADD_KEY)
    now = datetime.now().astimezone()
    later = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"
    around = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"

    outside = orgsafe(
        "validate",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--window",
        later,
    )
    bad = orgsafe(
        "validate",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--window",
        "25:00-05:00",
    )
    inside = orgsafe(
        "validate",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--window",
        around,
    )

    assert outside.code == 5
    assert f"--window {later}: refused at" in outside.err
    assert bad.code == 2
    assert bad.err.strip().splitlines()[-1].startswith("error: --window '25:00-05:00'")
    assert inside.code == 0, inside.err
    assert value(converted_url, VALID) is True


def test_run_outside_the_window_does_the_other_steps_and_stops_at_validate(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, f"INSERT INTO customers VALUES (30, '{ORG_X}', 'late')")
    now = datetime.now().astimezone()
    later = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"

    outcome = orgsafe(
        "run", "--database-url", converted_url, "--ref", REF, "--yes", "--window", later
    )

    assert outcome.code == 5
    assert value(converted_url, VALID) is False
    assert value(converted_url, "SELECT org_id FROM customers WHERE id = 30") is None


def test_snapshot_dumps_both_tables_before_validating(
    converted_url: str, orgsafe: Runner, tmp_path: Path
) -> None:
    execute(converted_url, ADD_KEY)

    outcome = orgsafe(
        "validate",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--snapshot",
        "--snapshot-dir",
        str(tmp_path),
    )

    assert outcome.code == 0, outcome.err
    (dump,) = tmp_path.glob("*-customers.dump")
    assert dump.stat().st_size > 0
    assert value(converted_url, VALID) is True
