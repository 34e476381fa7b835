"""The integrity runbook: find, repair and constrain org references online.

The public surface is small: parse references, open a context, run commands.
The modules behind it are organised by concept: references and values,
catalog reading, the session with its limits and retries, the quarantine and
history store, one module per step, and the runbook that orders them.
"""

from orgsafe.integrity.commands import (
    database_url,
    opened,
    run_audit,
    run_gate,
    run_history,
    run_restore,
    run_steps,
)
from orgsafe.integrity.context import Options, RetypeMode
from orgsafe.integrity.refs import Reference, parse_reference, select_references
from orgsafe.integrity.runbook import RUN_ORDER
from orgsafe.integrity.session import Limits

__all__ = [
    "RUN_ORDER",
    "Limits",
    "Options",
    "Reference",
    "RetypeMode",
    "database_url",
    "opened",
    "parse_reference",
    "run_audit",
    "run_gate",
    "run_history",
    "run_restore",
    "run_steps",
    "select_references",
]
