"""Every run leaves a record: who, when, which step, what changed."""

from __future__ import annotations

import getpass

from tests.integrity.conftest import ORG_X, REF, Runner, execute


def test_history_records_each_step_with_database_and_os_user(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, f"INSERT INTO customers VALUES (40, '{ORG_X}', 'orphan')")
    run = orgsafe(
        "run", "--database-url", converted_url, "--ref", REF, "--yes", "--json"
    )
    assert run.code == 0, run.err

    shown = orgsafe("history", "--database-url", converted_url, "--json")
    table = orgsafe("history", "--database-url", converted_url)

    assert shown.code == 0, shown.err
    entries = shown.report["entries"]
    assert [e["step"] for e in entries] == [
        "audit",
        "retype",
        "constrain",
        "repair",
        "validate",
    ]
    assert {e["run_id"] for e in entries} == {run.report["run_id"]}
    assert all(e["db_user"] == "postgres" for e in entries)
    assert all(e["os_user"] == getpass.getuser() for e in entries)
    assert all(e["outcome"] == "done" and e["finished_at"] for e in entries)
    repair = next(e for e in entries if e["step"] == "repair")
    assert repair["changed"]["changed"] == 1
    assert "integrity history" in table.out and "repair" in table.out


def test_a_failed_step_is_recorded_with_its_reason(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, "CREATE VIEW customer_orgs AS SELECT id, org_id FROM customers")
    orgsafe(
        "run", "--database-url", legacy_url, "--ref", REF, "--yes", "--mode", "online"
    )

    shown = orgsafe("history", "--database-url", legacy_url, "--json")

    last = shown.report["entries"][-1]
    assert (last["step"], last["outcome"]) == ("retype", "failed")
    assert "customer_orgs" in last["detail"]
