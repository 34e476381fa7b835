"""A run killed between any two steps (or mid-backfill) is finished by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.integrity.conftest import ORG_A, ORG_X, REF, execute, rows, value

CLI = [sys.executable, "-c", "from orgsafe.cli import main; main()", "integrity"]
DIRTY = f"""
INSERT INTO customers VALUES
  (4, '', 'empty'), (8, 'ck_legacy_0042', 'legacy id'),
  (40, '{ORG_X}', 'orphan'), (41, ' {ORG_A.upper()} ', 'padded');
"""


def _run(
    url: str, *extra: str, kill_after: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if kill_after:
        env["ORGSAFE_INTEGRITY_KILL_AFTER"] = kill_after
    return subprocess.run(
        [*CLI, "run", "--database-url", url, "--ref", REF, "--yes", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("kill_after", "mode"),
    [
        ("audit", "rewrite"),
        ("retype", "rewrite"),
        ("constrain", "rewrite"),
        ("repair", "rewrite"),
        ("retype-setup", "online"),
        ("retype-batch", "online"),
    ],
)
def test_run_killed_after_a_step_is_finished_by_the_next_run(
    legacy_url: str, kill_after: str, mode: str
) -> None:
    execute(
        legacy_url,
        DIRTY,
        f"INSERT INTO customers SELECT g, '{ORG_A}', 'bulk' FROM "
        "generate_series(100, 299) g",
    )

    killed = _run(
        legacy_url, "--mode", mode, "--batch-size", "50", kill_after=kill_after
    )
    finished = _run(legacy_url, "--mode", mode, "--batch-size", "50")

    assert killed.returncode == -signal.SIGKILL
    assert finished.returncode == 0, finished.stderr
    assert (
        value(
            legacy_url,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = 'customers'::regclass AND attname = 'org_id'",
        )
        == "uuid"
    )
    assert rows(
        legacy_url,
        "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f'",
    ) == [("customers_org_id_fkey", True)]
    final = dict(
        rows(legacy_url, "SELECT id, org_id::text FROM customers WHERE id < 100")
    )
    assert final == {
        1: ORG_A,
        2: ORG_A,
        3: final[3],
        4: None,
        8: None,
        40: None,
        41: ORG_A,
    }
    kept = rows(
        legacy_url,
        "SELECT row_key->>'id', original_value FROM orgsafe_integrity.quarantine "
        "ORDER BY 1",
    )
    assert kept == [("40", ORG_X), ("8", "ck_legacy_0042")]
    assert value(legacy_url, "SELECT count(*) FROM customers") == 207
