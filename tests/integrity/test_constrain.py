"""The foreign key goes on NOT VALID, never queues writers behind it, never drifts."""

from __future__ import annotations

import threading
import time

import psycopg

from tests.integrity.conftest import ORG_A, ORG_X, REF, Runner, execute, rows, value

KEYS = (
    "SELECT conname, confupdtype, confdeltype, convalidated FROM pg_constraint "
    "WHERE conrelid = 'customers'::regclass AND contype = 'f' ORDER BY conname"
)


def test_constrain_on_text_against_uuid_asks_for_retype_and_changes_nothing(
    legacy_url: str, orgsafe: Runner
) -> None:
    outcome = orgsafe("constrain", "--database-url", legacy_url, "--ref", REF, "--yes")

    assert outcome.code == 5
    assert outcome.err.strip().splitlines()[-1] == (
        "error: customers.org_id is text, orgs.id is uuid: run retype first"
    )
    assert rows(legacy_url, KEYS) == []


def test_constrain_adds_the_key_not_valid_with_the_default_actions(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, f"INSERT INTO customers VALUES (31, '{ORG_X}', 'orphan')")

    dry = orgsafe(
        "constrain", "--database-url", converted_url, "--ref", REF, "--dry-run"
    )
    outcome = orgsafe(
        "constrain", "--database-url", converted_url, "--ref", REF, "--yes"
    )

    assert (
        'ALTER TABLE "public"."customers" ADD CONSTRAINT "customers_org_id_fkey" '
        'FOREIGN KEY ("org_id") REFERENCES "public"."orgs" ("id") '
        "ON UPDATE CASCADE ON DELETE RESTRICT NOT VALID;"
    ) in dry.out
    assert "lock_timeout=2000ms" in dry.out
    assert outcome.code == 0, outcome.err
    assert rows(converted_url, KEYS) == [("customers_org_id_fkey", "c", "r", False)]


def _writer(
    url: str, stop: threading.Event, waits: list[float], errors: list[str]
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        key = 1000
        while not stop.is_set():
            key += 1
            started = time.monotonic()
            try:
                conn.execute(
                    "INSERT INTO customers VALUES (%s, %s, 'written meanwhile')",
                    (key, ORG_A),
                )
            except psycopg.Error as exc:
                errors.append(str(exc))
            waits.append(time.monotonic() - started)
            time.sleep(0.01)


def test_a_long_transaction_makes_constrain_retry_then_give_up_cleanly(
    converted_url: str, orgsafe: Runner
) -> None:
    stuck = psycopg.connect(converted_url)
    stuck.execute("UPDATE customers SET name = name WHERE id = 1")
    stuck_pid = stuck.info.backend_pid
    stop, waits, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(converted_url, stop, waits, errors))
    writer.start()
    try:
        outcome = orgsafe(
            "constrain",
            "--database-url",
            converted_url,
            "--ref",
            REF,
            "--yes",
            "--lock-timeout",
            "200ms",
            "--retries",
            "2",
        )
    finally:
        stop.set()
        writer.join()
        stuck.rollback()
        stuck.close()

    assert outcome.code == 4
    last = outcome.err.strip().splitlines()[-1]
    assert "lock not granted within lock_timeout=200ms on 3 tries" in last
    assert f"pid {stuck_pid} (idle in transaction, transaction open" in last
    assert "query started" in last
    assert outcome.err.count('"ddl_lock_timeout"') == 3
    assert rows(converted_url, KEYS) == []
    # Writers queued behind each attempt for at most about one lock_timeout.
    assert errors == []
    assert max(waits) < 1.0


def test_a_write_held_on_the_parent_also_stops_constrain_cleanly(
    converted_url: str, orgsafe: Runner
) -> None:
    stuck = psycopg.connect(converted_url)
    stuck.execute("UPDATE orgs SET name = name")
    try:
        outcome = orgsafe(
            "constrain",
            "--database-url",
            converted_url,
            "--ref",
            REF,
            "--yes",
            "--lock-timeout",
            "100ms",
            "--retries",
            "1",
        )
    finally:
        stuck.rollback()
        stuck.close()

    assert outcome.code == 4
    assert "RowExclusiveLock on orgs" in outcome.err
    assert rows(converted_url, KEYS) == []


def test_an_existing_key_with_the_same_definition_is_kept_even_not_valid(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        "ALTER TABLE customers ADD CONSTRAINT customers_org_id_fkey "
        "FOREIGN KEY (org_id) "
        "REFERENCES orgs (id) ON UPDATE CASCADE ON DELETE RESTRICT NOT VALID",
    )

    outcome = orgsafe(
        "constrain", "--database-url", converted_url, "--ref", REF, "--yes", "--json"
    )

    assert outcome.code == 0, outcome.err
    (result,) = outcome.report["results"]
    assert result["action"] == "kept" and result["validated"] is False
    assert rows(converted_url, KEYS) == [("customers_org_id_fkey", "c", "r", False)]


def test_a_key_with_other_actions_is_replaced_without_a_moment_unprotected(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        f"INSERT INTO customers VALUES (31, '{ORG_X}', 'orphan')",
        "ALTER TABLE customers ADD CONSTRAINT customers_org_id_fkey "
        "FOREIGN KEY (org_id) "
        "REFERENCES orgs (id) ON DELETE CASCADE NOT VALID",
    )
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(converted_url, autocommit=True) as conn:
            while not stop.is_set():
                seen.append(len(conn.execute(KEYS).fetchall()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = orgsafe(
            "run",
            "--database-url",
            converted_url,
            "--ref",
            REF,
            "--yes",
            "--on-delete",
            "restrict",
        )
    finally:
        stop.set()
        watcher.join()

    assert outcome.code == 0, outcome.err
    assert rows(converted_url, KEYS) == [("customers_org_id_fkey", "c", "r", True)]
    assert min(seen) >= 1
    assert value(converted_url, "SELECT org_id FROM customers WHERE id = 31") is None


def test_the_service_keys_are_reported_valid_and_left_as_they_are(
    service_url: str, orgsafe: Runner
) -> None:
    before = rows(
        service_url,
        "SELECT conname, confdeltype FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )

    outcome = orgsafe("run", "--database-url", service_url, "--yes", "--json")

    assert outcome.code == 0, outcome.err
    results = outcome.report["results"]
    constrained = [r for r in results if r["step"] == "constrain"]
    assert len(constrained) == 4
    assert all(r["action"] == "kept" and r["validated"] for r in constrained)
    after = rows(
        service_url,
        "SELECT conname, confdeltype FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )
    assert after == before
