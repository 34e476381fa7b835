"""Errors of the integrity runbook, each with the exit code the CLI uses.

OrgsafeError
├── UsageError
│   └── ConfirmationRequired   a change needs --yes and nobody can answer
├── DatabaseError
│   ├── LockNotAcquired        lock_timeout fired on every try (exit 4)
│   ├── StepTimeout            statement_timeout cancelled a step (exit 3)
│   └── QuarantineUnavailable  the quarantine cannot be written (exit 3)
├── OffendersRemain            a gate or validate found offenders (exit 1)
└── StepRefused                a guard said no: window, types, drift (exit 5)
"""

from __future__ import annotations

from orgsafe.errors import DatabaseError, OrgsafeError, UsageError

EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_LOCK = 4
EXIT_REFUSED = 5


class ConfirmationRequired(UsageError):
    """A plan that changes data was not confirmed and cannot be asked about."""

    exit_code = EXIT_USAGE


class LockNotAcquired(DatabaseError):
    """A DDL statement could not take its lock within lock_timeout, on every try."""

    exit_code = EXIT_LOCK

    def __init__(self, message: str, blockers: list[str]) -> None:
        super().__init__(message, "55P03")
        self.blockers = blockers


class StepTimeout(DatabaseError):
    """statement_timeout (or a cancel) stopped a statement: 57014."""

    exit_code = EXIT_DATABASE


class QuarantineUnavailable(DatabaseError):
    """The quarantine table cannot be created or written, so nothing may change."""

    exit_code = EXIT_DATABASE


class OffendersRemain(OrgsafeError):
    """Offenders exist where a step or the gate needs none."""

    exit_code = EXIT_FOUND


class StepRefused(OrgsafeError):
    """A guard refused the step: outside the window, wrong types, catalog drift."""

    exit_code = EXIT_REFUSED
