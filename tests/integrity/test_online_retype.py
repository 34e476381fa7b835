"""Online retype: writers keep writing, and nothing they write is lost."""

from __future__ import annotations

import threading
import time

import psycopg

from tests.integrity.conftest import ORG_A, ORG_B, REF, Runner, execute, rows, value

TYPE = (
    "SELECT format_type(atttypid, NULL) FROM pg_attribute "
    "WHERE attrelid = 'customers'::regclass AND attname = 'org_id'"
)


def test_online_retype_keeps_writers_going_and_converts_what_they_write(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(
        legacy_url,
        f"INSERT INTO customers SELECT g, '{ORG_A.upper()}', 'bulk' "
        "FROM generate_series(100, 20099) g",
    )
    stop, waits, errors, written = threading.Event(), [], [], []

    def write() -> None:
        # Unprepared statements: the server infers the parameter's type from
        # the column, so text keeps working after the column becomes uuid.
        with psycopg.connect(
            legacy_url, autocommit=True, prepare_threshold=None
        ) as conn:
            key = 100_000
            while not stop.is_set():
                key += 1
                started = time.monotonic()
                try:
                    # Upper case: accepted by uuid input and converted by retype.
                    conn.execute(
                        "INSERT INTO customers (id, org_id, name) VALUES (%s, %s, 'w')",
                        (key, ORG_B.upper()),
                    )
                    conn.execute(
                        "UPDATE customers SET org_id = %s WHERE id = %s",
                        (ORG_B, key % 1000 + 100),
                    )
                    written.append(key)
                except psycopg.Error as exc:
                    errors.append(str(exc))
                waits.append(time.monotonic() - started)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        outcome = orgsafe(
            "retype",
            "--database-url",
            legacy_url,
            "--ref",
            REF,
            "--yes",
            "--mode",
            "online",
            "--batch-size",
            "500",
        )
    finally:
        stop.set()
        writer.join()

    assert outcome.code == 0, outcome.err
    assert value(legacy_url, TYPE) == "uuid"
    assert errors == []
    assert len(written) > 10
    assert max(waits) < 1.0
    converted = dict(
        rows(
            legacy_url,
            "SELECT id, org_id::text FROM customers WHERE id = ANY(%s)",
            (written,),
        )
    )
    assert set(converted.values()) == {ORG_B}
    assert value(legacy_url, "SELECT count(*) FROM customers WHERE org_id IS NULL") == 0


def test_a_bad_value_written_during_online_retype_is_quarantined_by_the_trigger(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(
        legacy_url,
        f"INSERT INTO customers SELECT g, '{ORG_A}', 'bulk' FROM "
        "generate_series(100, 399) g",
    )
    killed = orgsafe(
        "retype",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--yes",
        "--mode",
        "online",
        "--batch-size",
        "100",
        "--statement-timeout",
        "1ms",
    )
    # The setup committed (column and trigger) before the backfill timed out.
    assert killed.code == 3
    execute(
        legacy_url, "INSERT INTO customers VALUES (50, 'legacy-50', 'late bad value')"
    )

    outcome = orgsafe(
        "retype",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--yes",
        "--json",
        "--mode",
        "online",
    )

    assert outcome.code == 0, outcome.err
    assert value(legacy_url, TYPE) == "uuid"
    assert value(legacy_url, "SELECT org_id FROM customers WHERE id = 50") is None
    assert rows(
        legacy_url,
        "SELECT row_key->>'id', original_value, reason FROM "
        "orgsafe_integrity.quarantine",
    ) == [("50", "legacy-50", "not a uuid")]


def test_online_retype_of_a_not_null_column_keeps_it_not_null(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(
        legacy_url,
        "ALTER TABLE customers ALTER COLUMN org_id SET NOT NULL",
        f"INSERT INTO customers SELECT g, '{{{ORG_A}}}', 'bulk' "
        "FROM generate_series(100, 399) g",
    )

    outcome = orgsafe(
        "retype",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--yes",
        "--mode",
        "online",
    )

    assert outcome.code == 0, outcome.err
    assert value(legacy_url, TYPE) == "uuid"
    assert (
        value(
            legacy_url,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = "
            "'customers'::regclass "
            "AND attname = 'org_id'",
        )
        is True
    )
    assert value(legacy_url, "SELECT count(DISTINCT org_id) FROM customers") == 2
    assert (
        rows(
            legacy_url,
            "SELECT conname FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid = 'customers'::regclass",
        )
        == []
    )


def test_online_retype_rebuilds_the_column_indexes_under_their_names(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(
        legacy_url,
        "CREATE INDEX customers_org_idx ON customers (org_id, name)",
        f"INSERT INTO customers SELECT g, '{ORG_A}', 'bulk' "
        "FROM generate_series(100, 399) g",
    )

    outcome = orgsafe(
        "retype",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--yes",
        "--mode",
        "online",
    )

    assert outcome.code == 0, outcome.err
    assert value(legacy_url, TYPE) == "uuid"
    assert rows(
        legacy_url,
        "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'customers'::regclass AND NOT i.indisprimary",
    ) == [
        (
            "customers_org_idx",
            True,
            "CREATE INDEX customers_org_idx ON public.customers "
            "USING btree (org_id, name)",
        )
    ]


def test_online_retype_refuses_a_column_other_objects_depend_on(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, "CREATE VIEW customer_orgs AS SELECT id, org_id FROM customers")

    outcome = orgsafe(
        "retype",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--yes",
        "--mode",
        "online",
    )

    assert outcome.code == 5
    assert "view customer_orgs" in outcome.err
    assert value(legacy_url, TYPE) == "text"
