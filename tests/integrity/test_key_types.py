"""Integer, bigint, text and uuid keys, and composite child keys, all work."""

from __future__ import annotations

from tests.integrity.conftest import Runner, execute, rows, value


def test_text_ids_pointing_at_an_integer_key_are_converted_and_repaired(
    scratch_url: str, orgsafe: Runner
) -> None:
    execute(
        scratch_url,
        "CREATE TABLE accounts (id integer PRIMARY KEY)",
        "CREATE TABLE invoices (no bigint PRIMARY KEY, account text)",
        "INSERT INTO accounts VALUES (1), (2)",
        "INSERT INTO invoices VALUES (10, '1'), (11, ' 2 '), (12, '+2'), (13, '3'), "
        "(14, '99999999999'), (15, 'two'), (16, '')",
    )
    ref = "invoices.account=accounts.id"

    outcome = orgsafe(
        "run", "--database-url", scratch_url, "--ref", ref, "--yes", "--json"
    )

    assert outcome.code == 0, outcome.err
    assert (
        value(
            scratch_url,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = 'invoices'::regclass AND attname = 'account'",
        )
        == "integer"
    )
    assert dict(rows(scratch_url, "SELECT no, account FROM invoices")) == {
        10: 1,
        11: 2,
        12: 2,
        13: None,
        14: None,
        15: None,
        16: None,
    }
    kept = rows(
        scratch_url,
        "SELECT row_key->>'no', original_value, reason "
        "FROM orgsafe_integrity.quarantine ORDER BY 1",
    )
    assert kept == [
        ("13", "3", "no parent row"),
        ("14", "99999999999", "out of range"),
        ("15", "two", "not an integer"),
    ]


def test_bigint_keys_and_a_composite_child_key_round_trip_through_restore(
    scratch_url: str, orgsafe: Runner
) -> None:
    execute(
        scratch_url,
        "CREATE TABLE tenants (id bigint PRIMARY KEY)",
        "CREATE TABLE usage (tenant bigint, day date, units int, "
        "PRIMARY KEY (day, units))",
        "INSERT INTO tenants VALUES (5000000000)",
        "INSERT INTO usage VALUES (5000000000, '2026-01-01', 1), "
        "(7000000000, '2026-01-01', 2), (7000000000, '2026-01-02', 1)",
    )
    ref = "usage.tenant=tenants.id"

    outcome = orgsafe(
        "repair",
        "--database-url",
        scratch_url,
        "--ref",
        ref,
        "--yes",
        "--json",
        "--batch-size",
        "1",
    )
    assert outcome.code == 0, outcome.err
    assert value(scratch_url, "SELECT count(*) FROM usage WHERE tenant IS NULL") == 2

    restored = orgsafe(
        "restore", outcome.report["run_id"], "--database-url", scratch_url, "--yes"
    )

    assert restored.code == 0, restored.err
    assert rows(
        scratch_url, "SELECT tenant, day::text, units FROM usage ORDER BY 2, 3"
    ) == [
        (5000000000, "2026-01-01", 1),
        (7000000000, "2026-01-01", 2),
        (7000000000, "2026-01-02", 1),
    ]


def test_text_keys_on_both_sides_need_no_retype(
    scratch_url: str, orgsafe: Runner
) -> None:
    execute(
        scratch_url,
        "CREATE TABLE teams (slug text PRIMARY KEY)",
        "CREATE TABLE members (id uuid PRIMARY KEY DEFAULT "
        "gen_random_uuid(), team text)",
        "INSERT INTO teams VALUES ('red'), ('blue')",
        "INSERT INTO members (team) VALUES ('red'), ('Red'), ('green'), (NULL)",
    )

    outcome = orgsafe(
        "run",
        "--database-url",
        scratch_url,
        "--ref",
        "members.team=teams.slug",
        "--yes",
    )

    assert outcome.code == 0, outcome.err
    assert sorted(rows(scratch_url, "SELECT coalesce(team, '-') FROM members")) == [
        ("-",),
        ("-",),
        ("-",),
        ("red",),
    ]
    assert value(scratch_url, "SELECT count(*) FROM orgsafe_integrity.quarantine") == 2


def test_schema_qualified_references_work(scratch_url: str, orgsafe: Runner) -> None:
    execute(
        scratch_url,
        "CREATE SCHEMA billing",
        "CREATE TABLE billing.orgs (id uuid PRIMARY KEY)",
        "CREATE TABLE billing.plans (id int PRIMARY KEY, org_id uuid)",
        "INSERT INTO billing.plans VALUES (1, gen_random_uuid())",
    )

    outcome = orgsafe(
        "run",
        "--database-url",
        scratch_url,
        "--ref",
        "billing.plans.org_id=billing.orgs.id",
        "--yes",
    )

    assert outcome.code == 0, outcome.err
    assert (
        value(scratch_url, "SELECT count(*) FROM billing.plans WHERE org_id IS NULL")
        == 1
    )
    assert (
        value(
            scratch_url,
            "SELECT convalidated FROM pg_constraint WHERE "
            "conrelid = 'billing.plans'::regclass AND contype = 'f'",
        )
        is True
    )
