"""`orgsafe doctor` and the check `serve` makes before it serves."""

from __future__ import annotations

import json
import secrets

import pytest

from orgsafe.storage import connect
from tests.test_cli_admin import orgsafe


class Scratch:
    """A scratch database the commands see as DATABASE_URL, with its own app role."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.role = f"doctor_app_{secrets.token_hex(3)}"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url,
            "ORGSAFE_APP_ROLE": self.role,
            "ORGSAFE_APP_DATABASE_URL": "",
            "ORGSAFE_APP_PASSWORD": "doctor-password",
        }

    def run(self, target, *args: str):
        return orgsafe(target, *args, env=self.env())

    def sql(self, statement: str) -> None:
        with connect(self.url, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture
def scratch(scratch_url, target):
    made = Scratch(scratch_url)
    upgraded = made.run(target, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    yield made
    made.sql(f"DROP OWNED BY {made.role}")
    made.sql(f"DROP ROLE IF EXISTS {made.role}")


def test_a_freshly_migrated_database_passes(scratch, target):
    done = scratch.run(target, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout


def test_every_weakness_is_listed_and_the_exit_is_1(scratch, target):
    scratch.sql(f"ALTER ROLE {scratch.role} BYPASSRLS")
    scratch.sql("ALTER TABLE customers NO FORCE ROW LEVEL SECURITY")
    scratch.sql("ALTER TABLE memberships DISABLE ROW LEVEL SECURITY")
    scratch.sql(f"ALTER TABLE sessions OWNER TO {scratch.role}")
    scratch.sql("ALTER TABLE customers DROP CONSTRAINT customers_org_id_fkey")
    scratch.sql(
        "ALTER TABLE customers ADD CONSTRAINT customers_org_id_fkey"
        " FOREIGN KEY (org_id) REFERENCES orgs (id) NOT VALID"
    )
    scratch.sql("CREATE TABLE invoices (id int, org_id uuid)")
    done = scratch.run(target, "doctor", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    found = {(f["check"], f["subject"], f["detail"]) for f in report["failures"]}
    role = scratch.role
    assert ("app-role", role, "has BYPASSRLS: row security is skipped") in found
    assert ("tenant-table", "customers", "row security is not forced") in found
    assert ("tenant-table", "memberships", "row security is disabled") in found
    assert any(f[:2] == ("tenant-table", "sessions") and "owns" in f[2] for f in found)
    assert ("tenant-table", "invoices", "row security is disabled") in found
    assert ("tenant-table", "invoices", "has no policy") in found
    assert (
        "tenant-reference",
        "customers.org_id",
        "foreign key is not validated to orgs(id)",
    ) in found
    assert (
        "tenant-reference",
        "invoices.org_id",
        "no foreign key to orgs(id)",
    ) in found
    assert report["ok"] is False


def test_a_superuser_app_role_fails(scratch, target):
    scratch.sql(f"ALTER ROLE {scratch.role} SUPERUSER")
    done = scratch.run(target, "doctor")
    assert done.returncode == 1
    assert f"FAILED app-role: {scratch.role}: is a superuser" in done.stdout
    scratch.sql(f"ALTER ROLE {scratch.role} NOSUPERUSER")


def test_serve_refuses_to_start_in_production_while_a_check_fails(scratch, target):
    scratch.sql("ALTER TABLE customers NO FORCE ROW LEVEL SECURITY")
    refused = scratch.run(target, "serve", "--port", "1")
    assert refused.returncode == 5
    assert (
        "FAILED tenant-table: customers: row security is not forced" in refused.stderr
    )
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: refusing to serve in production: 1 doctor check(s) failed"
    )
