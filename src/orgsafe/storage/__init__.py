"""Where the data lives: the embedded server or DATABASE_URL, roles, schema, pool."""

from typing import TYPE_CHECKING

from orgsafe.storage.database import (
    DatabaseTarget,
    connect,
    redact,
    resolve_target,
    translate,
)

if TYPE_CHECKING:
    from orgsafe.storage.migrate import upgrade
else:

    def upgrade(*args: object, **kwargs: object) -> str:
        # Alembic and SQLAlchemy take half a second to import; only migrations
        # need them, so commands that do not migrate never pay for it.
        from orgsafe.storage.migrate import upgrade as run

        return run(*args, **kwargs)


__all__ = [
    "DatabaseTarget",
    "connect",
    "redact",
    "resolve_target",
    "translate",
    "upgrade",
]
