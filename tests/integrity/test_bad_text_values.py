"""Every kind of bad text value in a text org_id on its way to uuid."""

from __future__ import annotations

from orgsafe.integrity.values import UUID_PATTERN
from tests.integrity.conftest import ORG_A, ORG_B, REF, Runner, execute, rows, value

BAD_VALUES = f"""
INSERT INTO customers VALUES
  (4, '', 'empty'),
  (5, '   ', 'blank'),
  (6, E'{ORG_A}\\n', 'newline'),
  (7, ' {ORG_A} ', 'padded'),
  (8, 'ck_legacy_0042', 'legacy id'),
  (9, '11111111-1111-1111-1111-11111111111', 'one digit short'),
  (10, NULL, 'null');
"""


def test_audit_names_each_value_that_will_not_convert_with_its_reason(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, BAD_VALUES)

    outcome = orgsafe("audit", "--database-url", legacy_url, "--ref", REF, "--json")

    # Exit 1: offenders found; the report is printed all the same.
    assert outcome.code == 1, outcome.err
    (result,) = outcome.report["results"]
    assert result["will_not_convert"] == {
        "blank": 1,
        "empty": 1,
        "not a uuid": 1,
        "surrounding whitespace": 2,
        "wrong length": 1,
    }
    reasons = {s["key"]["id"]: s["reason"] for s in result["samples"]}
    assert reasons == {
        4: "empty",
        5: "blank",
        6: "surrounding whitespace",
        7: "surrounding whitespace",
        8: "not a uuid",
        9: "wrong length",
    }
    # Padded keys of a real org will convert, so they are not offenders.
    assert result["offenders"] == 4


def test_retype_trims_blanks_to_null_and_quarantines_the_rest_before_converting(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, BAD_VALUES)

    outcome = orgsafe(
        "retype", "--database-url", legacy_url, "--ref", REF, "--yes", "--json"
    )

    assert outcome.code == 0, outcome.err
    assert (
        value(
            legacy_url,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = 'customers'::regclass AND attname = 'org_id'",
        )
        == "uuid"
    )
    final = dict(rows(legacy_url, "SELECT id, org_id::text FROM customers"))
    assert final == {
        1: ORG_A,
        2: ORG_A,
        3: ORG_B,
        4: None,
        5: None,
        6: ORG_A,
        7: ORG_A,
        8: None,
        9: None,
        10: None,
    }
    kept = rows(
        legacy_url,
        "SELECT row_key->>'id', original_value, reason, run_id::text "
        "FROM orgsafe_integrity.quarantine ORDER BY 1",
    )
    run_id = outcome.report["run_id"]
    assert kept == [
        ("8", "ck_legacy_0042", "not a uuid", run_id),
        ("9", "11111111-1111-1111-1111-11111111111", "wrong length", run_id),
    ]


def test_restore_after_retype_names_the_texts_a_uuid_column_cannot_take_back(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, BAD_VALUES)
    retyped = orgsafe(
        "retype", "--database-url", legacy_url, "--ref", REF, "--yes", "--json"
    )
    assert retyped.code == 0, retyped.err

    outcome = orgsafe(
        "restore",
        retyped.report["run_id"],
        "--database-url",
        legacy_url,
        "--yes",
        "--json",
    )

    assert outcome.code == 0, outcome.err
    assert outcome.report["restored"] == []
    refused = {
        r["key"]["id"]: (r["value"], r["reason"])
        for r in outcome.report["not_restored"]
    }
    assert refused == {
        8: ("ck_legacy_0042", "'ck_legacy_0042' does not fit org_id, now uuid"),
        9: (
            "11111111-1111-1111-1111-11111111111",
            "'11111111-1111-1111-1111-11111111111' does not fit org_id, now uuid",
        ),
    }
    # They stay in the quarantine, exactly as they were.
    assert (
        value(
            legacy_url,
            "SELECT count(*) FROM orgsafe_integrity.quarantine "
            "WHERE restored_at IS NULL",
        )
        == 2
    )


def test_online_retype_gives_the_same_result_as_a_rewrite(
    legacy_url: str, orgsafe: Runner
) -> None:
    execute(legacy_url, BAD_VALUES)

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
        "3",
    )

    assert outcome.code == 0, outcome.err
    final = dict(rows(legacy_url, "SELECT id, org_id::text FROM customers"))
    assert final == {
        1: ORG_A,
        2: ORG_A,
        3: ORG_B,
        4: None,
        5: None,
        6: ORG_A,
        7: ORG_A,
        8: None,
        9: None,
        10: None,
    }
    assert rows(
        legacy_url,
        "SELECT row_key->>'id', reason FROM orgsafe_integrity.quarantine ORDER BY 1",
    ) == [("8", "not a uuid"), ("9", "wrong length")]


UUID_CANDIDATES = [
    ORG_A,
    ORG_A.upper(),
    ORG_A.replace("-", ""),
    "{" + ORG_A + "}",
    "{" + ORG_A.replace("-", "") + "}",
    "1111-1111-1111-1111-1111-1111-1111-1111",
    "11111111111111111111111111111111-",
    "-11111111111111111111111111111111",
    "111-11111-1111-1111-1111-111111111111",
    "1111111--1111-1111-1111-111111111111",
    "{" + ORG_A,
    ORG_A + "}",
    ORG_A[:-1],
    ORG_A + "1",
    ORG_A.replace("1", "g", 1),
    " " + ORG_A,
    "",
    "{}",
]


def test_the_uuid_check_agrees_with_the_server_on_every_shape(scratch_url: str) -> None:
    execute(
        scratch_url,
        "CREATE FUNCTION casts(t text) RETURNS boolean LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM t::uuid; RETURN true; "
        "EXCEPTION WHEN invalid_text_representation THEN RETURN false; END $$",
    )
    for candidate in UUID_CANDIDATES:
        server, ours = rows(
            scratch_url,
            "SELECT casts(%s), lower(%s) ~ %s",
            (candidate, candidate, UUID_PATTERN),
        )[0]
        assert server == ours, candidate
