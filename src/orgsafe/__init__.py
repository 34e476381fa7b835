"""orgsafe: a tenant-safe service and an integrity runbook for PostgreSQL."""

from orgsafe.errors import (
    ConfigError,
    DatabaseError,
    OrgsafeError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DatabaseError",
    "OrgsafeError",
    "UsageError",
    "__version__",
]
