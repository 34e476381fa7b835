"""Bad input: one line naming the flag and the value, exit 2, nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrity.conftest import REF, Runner, execute, rows


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ref", "customers.org_id"], "error: --ref 'customers.org_id': expected"),
        (["--ref", "customers=orgs.id"], "error: --ref 'customers=orgs.id': expected"),
        (["--ref", "nosuch.org_id=orgs.id"], 'table "nosuch" does not exist'),
        (["--ref", "customers.orgid=orgs.id"], "column customers.orgid does not exist"),
        (["--ref", "customers.org_id=orgs.name"], "orgs.name is not unique"),
        (
            ["--ref", REF, "--on-orphan", "delete"],
            "error: --on-orphan 'delete': expected",
        ),
        (["--ref", REF, "--lock-timeout", "soon"], "error: --lock-timeout 'soon'"),
        (["--ref", REF, "--on-delete", "explode"], "error: --on-delete 'explode'"),
        (["--ref", REF, "--window", "1-5"], "error: --window '1-5'"),
        (["--ref", REF, "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_with_exit_2(
    legacy_url: str, orgsafe: Runner, args: list[str], expected: str
) -> None:
    outcome = orgsafe("run", "--database-url", legacy_url, "--yes", *args)

    assert outcome.code == 2
    assert expected in _last_line(outcome.err)
    assert _last_line(outcome.err).startswith("error: ")
    assert rows(legacy_url, "SELECT to_regnamespace('orgsafe_integrity')") == [(None,)]


def test_a_change_without_yes_and_without_a_terminal_is_refused(
    legacy_url: str, orgsafe: Runner
) -> None:
    outcome = orgsafe("run", "--database-url", legacy_url, "--ref", REF)

    assert outcome.code == 2
    assert _last_line(outcome.err) == (
        "error: --yes missing: standard input is not a terminal, so the plan cannot "
        "be confirmed; nothing changed"
    )
    assert "plan" in outcome.out
    assert rows(
        legacy_url,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'customers' AND column_name = 'org_id'",
    ) == [("text",)]


def test_json_prints_one_object_and_nothing_else(
    legacy_url: str, orgsafe: Runner
) -> None:
    outcome = orgsafe("audit", "--database-url", legacy_url, "--ref", REF, "--json")

    assert outcome.code == 0, outcome.err
    assert len(outcome.out.strip().splitlines()) == 1
    assert outcome.report["command"] == "audit"


def test_json_reports_an_error_too(legacy_url: str, orgsafe: Runner) -> None:
    outcome = orgsafe(
        "constrain", "--database-url", legacy_url, "--ref", REF, "--yes", "--json"
    )

    assert outcome.code == 5
    assert outcome.report["exit_code"] == 5
    assert "run retype first" in outcome.report["error"]


def test_references_can_come_from_a_config_file(
    legacy_url: str, orgsafe: Runner, tmp_path: Path
) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.orgsafe.integrity]\nrefs = [{ ref = "customers.org_id=orgs.id", '
        'on_orphan = "null" }]\n'
    )
    execute(legacy_url, "INSERT INTO customers VALUES (8, 'x', 'bad')")

    outcome = orgsafe("gate", "--database-url", legacy_url, "--config", str(config))

    assert outcome.code == 1
    assert "gate failed: 1 offenders in customers.org_id=orgs.id (1)" in outcome.err


def test_restore_of_an_unknown_run_is_bad_usage(
    legacy_url: str, orgsafe: Runner
) -> None:
    outcome = orgsafe("restore", "not-a-run", "--database-url", legacy_url, "--yes")

    assert outcome.code == 2
    assert _last_line(outcome.err) == "error: RUN_ID 'not-a-run': not a run id (a uuid)"
