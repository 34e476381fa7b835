"""What every step works with: the session, the options, the run id, the output."""

from __future__ import annotations

import os
import re
import signal
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from pathlib import Path

from orgsafe.errors import UsageError
from orgsafe.integrity.output import Reporter
from orgsafe.integrity.refs import OrphanAction
from orgsafe.integrity.session import Session, log
from orgsafe.integrity.store import History

# A crash drill: the process kills itself (SIGKILL) right after the named step.
KILL_AFTER_ENV = "ORGSAFE_INTEGRITY_KILL_AFTER"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class RetypeMode(StrEnum):
    online = "online"
    rewrite = "rewrite"


@dataclass(frozen=True)
class Window:
    """A daily maintenance window in local time; it may wrap past midnight."""

    start: time
    end: time

    def contains(self, moment: datetime) -> bool:
        now = moment.time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Options:
    on_orphan: OrphanAction | None = None
    on_update: str | None = None
    on_delete: str | None = None
    batch_size: int = 2000
    pause_ms: int = 0
    mode: RetypeMode | None = None
    online_threshold: int = 10_000
    validate_attempts: int = 3
    snapshot: bool = False
    snapshot_dir: Path = field(default_factory=lambda: Path("orgsafe-snapshots"))
    window: Window | None = None
    long_transaction_s: int = 60
    samples: int = 10


@dataclass
class Context:
    session: Session
    report: Reporter
    history: History
    run_id: uuid.UUID
    options: Options

    def checkpoint(self, step: str) -> None:
        """Die hard after `step` when a crash drill asks for it."""
        if os.environ.get(KILL_AFTER_ENV) == step:
            log.warning("crash_drill", after=step)
            os.kill(os.getpid(), signal.SIGKILL)


def parse_duration(raw: str, flag: str) -> int:
    """Milliseconds from `500ms`, `2s`, `5min`, `1h` or a bare number of ms."""
    match = _DURATION.match(raw)
    if not match:
        raise UsageError(
            f"{flag} {raw!r}: expected a duration such as 500ms, 2s or 5min"
        )
    amount, unit = match.groups()
    value = int(float(amount) * _UNIT_MS[unit or "ms"])
    if value <= 0:
        raise UsageError(f"{flag} {raw!r}: must be more than zero")
    return value


def parse_window(raw: str) -> Window:
    match = _WINDOW.match(raw.strip())
    if not match:
        raise UsageError(f"--window {raw!r}: expected HH:MM-HH:MM, e.g. 01:00-05:00")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise UsageError(f"--window {raw!r}: hours run 00-23 and minutes 00-59")
    if (h1, m1) == (h2, m2):
        raise UsageError(f"--window {raw!r}: start and end are the same")
    return Window(time(h1, m1), time(h2, m2))
