"""Where the data lives: the embedded server or DATABASE_URL, roles, schema, pool."""

from orgsafe.storage.database import (
    DatabaseTarget,
    connect,
    redact,
    resolve_target,
    translate,
)
from orgsafe.storage.migrate import upgrade

__all__ = [
    "DatabaseTarget",
    "connect",
    "redact",
    "resolve_target",
    "translate",
    "upgrade",
]
