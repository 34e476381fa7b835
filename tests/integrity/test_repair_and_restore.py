"""Repair keeps a copy of everything it changes; restore gives it back exactly."""

from __future__ import annotations

import threading
import time

import pytest

from orgsafe.integrity import store
from tests.integrity.conftest import ORG_A, ORG_X, REF, Runner, execute, rows, value

ORPHANS = f"""
INSERT INTO customers VALUES
  (40, '{ORG_X}', 'orphan with history'),
  (41, '{ORG_X}', 'orphan 2');
"""


def _customers(url: str) -> dict[int, str | None]:
    return dict(rows(url, "SELECT id, org_id::text FROM customers"))


def test_dry_run_lists_offenders_with_values_and_changes_nothing(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)
    before = _customers(converted_url)

    outcome = orgsafe(
        "repair", "--database-url", converted_url, "--ref", REF, "--dry-run"
    )

    assert outcome.code == 0, outcome.err
    assert f"{{'id': 40}}: '{ORG_X}' (no parent row)" in outcome.out
    assert f"{{'id': 41}}: '{ORG_X}' (no parent row)" in outcome.out
    assert "FOR UPDATE" in outcome.out and "NOT EXISTS" in outcome.out
    assert _customers(converted_url) == before
    assert value(converted_url, "SELECT to_regnamespace('orgsafe_integrity')") is None


def test_unwritable_quarantine_fails_the_repair_with_zero_rows_changed(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        ORPHANS,
        "CREATE ROLE legacy_owner LOGIN",
        "ALTER TABLE customers OWNER TO legacy_owner",
        "ALTER TABLE orgs OWNER TO legacy_owner",
        # The quarantine exists, owned by another role: legacy_owner may not write it.
        store.DDL,
    )
    user_url = f"{converted_url} user=legacy_owner"
    try:
        before = _customers(converted_url)
        outcome = orgsafe("repair", "--database-url", user_url, "--ref", REF, "--yes")

        assert outcome.code == 3
        assert "orgsafe_integrity.quarantine is not writable" in outcome.err
        assert _customers(converted_url) == before
    finally:
        execute(
            converted_url,
            "DROP OWNED BY legacy_owner CASCADE",
            "DROP ROLE legacy_owner",
        )


def test_quarantine_insert_failing_midway_rolls_back_the_change(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)
    orgsafe(
        "repair", "--database-url", converted_url, "--ref", "orgs.id=orgs.id", "--yes"
    )
    execute(
        converted_url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'quarantine disk full'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON orgsafe_integrity.quarantine "
        "FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    before = _customers(converted_url)

    outcome = orgsafe("repair", "--database-url", converted_url, "--ref", REF, "--yes")

    assert outcome.code == 3
    assert "quarantine disk full" in outcome.err
    assert "rolled back" in outcome.err
    assert _customers(converted_url) == before


def test_repair_quarantines_then_nulls_and_restore_brings_back_exact_originals(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)

    outcome = orgsafe(
        "repair", "--database-url", converted_url, "--ref", REF, "--yes", "--json"
    )

    assert outcome.code == 0, outcome.err
    run_id = outcome.report["run_id"]
    after = _customers(converted_url)
    assert after[40] is None and after[41] is None
    assert after[1] == ORG_A and after[2] == ORG_A
    kept = rows(
        converted_url,
        "SELECT row_key->>'id', original_value, reason, run_id::text "
        "FROM orgsafe_integrity.quarantine ORDER BY 1",
    )
    assert kept == [
        ("40", ORG_X, "no parent row", run_id),
        ("41", ORG_X, "no parent row", run_id),
    ]

    restored = orgsafe("restore", run_id, "--database-url", converted_url, "--yes")

    assert restored.code == 0, restored.err
    assert _customers(converted_url)[40] == ORG_X
    assert _customers(converted_url)[41] == ORG_X


def test_a_parent_created_during_repair_saves_its_children(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)
    quarantined = "SELECT count(*) FROM orgsafe_integrity.quarantine"

    def create_org_x_after_first_batch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            exists = value(
                converted_url, "SELECT to_regclass('orgsafe_integrity.quarantine')"
            )
            if exists and value(converted_url, quarantined) >= 1:
                execute(converted_url, f"INSERT INTO orgs VALUES ('{ORG_X}', 'X')")
                return
            time.sleep(0.02)

    helper = threading.Thread(target=create_org_x_after_first_batch)
    helper.start()
    outcome = orgsafe(
        "repair",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--batch-size",
        "1",
        "--pause-ms",
        "1500",
    )
    helper.join()

    assert outcome.code == 0, outcome.err
    after = _customers(converted_url)
    # Row 40 went in the first batch; 41's batch re-checked and found a parent.
    assert after[40] is None
    assert after[41] == ORG_X
    assert value(converted_url, quarantined) == 1


def test_not_null_column_refuses_on_orphan_null_and_changes_nothing(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(
        converted_url,
        ORPHANS,
        "ALTER TABLE customers ALTER COLUMN org_id SET NOT NULL",
    )
    before = _customers(converted_url)

    outcome = orgsafe(
        "repair",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--on-orphan",
        "null",
    )

    assert outcome.code == 2
    assert outcome.err.strip().splitlines()[-1] == (
        "error: --on-orphan null: customers.org_id is NOT NULL; "
        "use --on-orphan quarantine or reassign:VALUE"
    )
    assert _customers(converted_url) == before


def test_quarantine_moves_rows_aside_and_restore_reinserts_them_whole(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)

    outcome = orgsafe(
        "repair",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--json",
        "--on-orphan",
        "quarantine",
    )

    assert outcome.code == 0, outcome.err
    assert 40 not in _customers(converted_url)
    saved = value(
        converted_url,
        "SELECT row_data FROM orgsafe_integrity.quarantine WHERE row_key->>'id' = '40'",
    )
    assert saved == {"id": 40, "org_id": ORG_X, "name": "orphan with history"}

    restored = orgsafe(
        "restore", outcome.report["run_id"], "--database-url", converted_url, "--yes"
    )

    assert restored.code == 0, restored.err
    assert rows(
        converted_url,
        "SELECT id, org_id::text, name FROM customers WHERE id >= 40 ORDER BY id",
    ) == [(40, ORG_X, "orphan with history"), (41, ORG_X, "orphan 2")]


def test_reassign_points_offenders_at_an_existing_parent_only(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)

    missing = orgsafe(
        "repair",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--on-orphan",
        f"reassign:{ORG_X}",
    )
    done = orgsafe(
        "repair",
        "--database-url",
        converted_url,
        "--ref",
        REF,
        "--yes",
        "--on-orphan",
        f"reassign:{ORG_A.upper()}",
    )

    assert missing.code == 2
    assert "--on-orphan reassign:" in missing.err and "no row in orgs.id" in missing.err
    assert done.code == 0, done.err
    assert _customers(converted_url)[40] == ORG_A
    assert (
        value(
            converted_url,
            "SELECT new_value FROM orgsafe_integrity.quarantine WHERE "
            "row_key->>'id' = '41'",
        )
        == ORG_A
    )


def test_restore_says_which_values_a_validated_key_now_blocks(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, ORPHANS)
    first = orgsafe(
        "run", "--database-url", converted_url, "--ref", REF, "--yes", "--json"
    )
    assert first.code == 0, first.err
    repair = next(r for r in first.report["results"] if r["step"] == "repair")

    outcome = orgsafe(
        "restore", repair["run_id"], "--database-url", converted_url, "--yes", "--json"
    )

    assert outcome.code == 0, outcome.err
    refused = outcome.report["not_restored"]
    assert {r["key"]["id"] for r in refused} == {40, 41}
    assert all("customers_org_id_fkey" in r["reason"] for r in refused)
    assert all(r["value"] == ORG_X for r in refused)
    assert _customers(converted_url)[40] is None


@pytest.mark.parametrize("bad", ["nope", "99999999-9999-9999-9999-999999999999"])
def test_a_bad_reassign_value_is_refused_before_any_step_changes_the_table(
    legacy_url: str, orgsafe: Runner, bad: str
) -> None:
    execute(legacy_url, "INSERT INTO customers VALUES (50, 'ck_legacy_0042', 'x')")
    done = orgsafe(
        "run",
        "--database-url",
        legacy_url,
        "--ref",
        REF,
        "--on-orphan",
        f"reassign:{bad}",
        "--yes",
    )
    assert done.code == 2, done.err
    assert f"--on-orphan reassign:{bad}" in done.err.strip().splitlines()[-1]
    column_type = value(
        legacy_url,
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_name = 'customers' AND column_name = 'org_id'",
    )
    assert column_type == "text"
    constraints = value(
        legacy_url,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'customers'::regclass"
        " AND contype = 'f'",
    )
    assert constraints == 0
