"""Structured logs: one JSON object per line, on standard error.

Loggers form one tree (`orgsafe.web`, `orgsafe.storage`, `orgsafe.integrity`);
CLI output for people is printed separately and never goes through here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolved per logger so a redirected stderr (tests, daemons) is honoured.
    return structlog.PrintLogger(file=sys.stderr)


def configure(level: int = logging.INFO, *, force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str, **bound: Any) -> Any:
    configure()
    return structlog.get_logger(logger_name=name, **bound)
