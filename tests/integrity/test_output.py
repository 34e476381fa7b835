"""Progress for people: a bar on a terminal, plain lines otherwise, none in JSON."""

from __future__ import annotations

import io

from orgsafe.integrity.output import Reporter
from tests.integrity.conftest import ORG_X, REF, Runner, execute


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _count_to(report: Reporter, total: int) -> None:
    with report.progress("repair customers.org_id", total) as ticker:
        for _ in range(total):
            ticker.advance(1)


def test_a_terminal_gets_a_progress_bar() -> None:
    err = Terminal()
    _count_to(Reporter(False, io.StringIO(), err), 3)

    assert "repair customers.org_id" in err.getvalue()
    assert "3/3" in err.getvalue()
    assert "━" in err.getvalue()


def test_a_pipe_gets_plain_lines_and_json_gets_nothing() -> None:
    plain_err, json_out, json_err = io.StringIO(), io.StringIO(), io.StringIO()
    _count_to(Reporter(False, io.StringIO(), plain_err), 3)
    _count_to(Reporter(True, json_out, json_err), 3)

    assert plain_err.getvalue() == "repair customers.org_id: 3/3 done\n"
    assert json_out.getvalue() == "" and json_err.getvalue() == ""


def test_repair_reports_plain_progress_when_not_on_a_terminal(
    converted_url: str, orgsafe: Runner
) -> None:
    execute(converted_url, f"INSERT INTO customers VALUES (40, '{ORG_X}', 'orphan')")

    outcome = orgsafe("repair", "--database-url", converted_url, "--ref", REF, "--yes")

    assert outcome.code == 0, outcome.err
    assert "repair customers.org_id: 1/1 done" in outcome.err
