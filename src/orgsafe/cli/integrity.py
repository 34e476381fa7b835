"""`orgsafe integrity ...`: the integrity runbook's commands."""

from __future__ import annotations

import typer

integrity_app = typer.Typer(
    help="Find, repair and constrain org references online.",
    no_args_is_help=True,
)
