"""The error tree of orgsafe.

    OrgsafeError                  every error orgsafe raises on purpose
    ├── ConfigError               a setting is missing, malformed or contradictory
    ├── UsageError                a command was called with a wrong flag or value
    ├── DatabaseError             PostgreSQL refused or failed; keeps the SQLSTATE
    │   └── DatabaseUnavailable   the server cannot be reached at all
    └── RequestError              an HTTP request is refused (status + message)

psycopg errors are translated once, in `orgsafe.storage`, with the original kept as
`__cause__` and its SQLSTATE copied onto the new error.
"""

from __future__ import annotations


class OrgsafeError(Exception):
    """Base class of every error orgsafe raises on purpose."""


class ConfigError(OrgsafeError):
    """A setting is missing, malformed or contradictory."""


class UsageError(OrgsafeError):
    """A command was called with a wrong flag or value."""


class DatabaseError(OrgsafeError):
    """PostgreSQL refused or failed an operation."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached."""


class RequestError(OrgsafeError):
    """An HTTP request refused with a client-facing message.

    `reason` is a short machine word for the log line (`no_org`, `not_member`, ...);
    `message` is what the client reads in `{"error": ...}`.
    """

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers
