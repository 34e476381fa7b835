"""The effective org of a request: one rule, in one place.

In order: the session's org, if the user still holds a membership in it; else,
outside production only, an `X-Org-Id` header naming an org the user belongs to;
else the user's default org, if still a member; else none (the caller answers 401).

In production the header is reported (whoami, logs) but never read for tenancy.
Outside production a malformed or repeated header is refused (400), and a header
naming an org the user does not hold is refused (403), even when the session's org
wins: a client asking for an org it may not see is told so, never quietly served.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from orgsafe.config import Environment
from orgsafe.errors import RequestError

OrgSource = Literal["session", "header", "user"]

# Canonical form only: a header is not a place for braces, urns or missing hyphens.
_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
HEADER_REPORT_LIMIT = 64


@dataclass(frozen=True)
class OrgChoice:
    effective_org_id: uuid.UUID | None
    source: OrgSource | None
    header_org_id: str | None
    header_ignored: bool


def parse_uuid(raw: str) -> uuid.UUID | None:
    """A uuid in canonical text form, or None."""
    if not _CANONICAL_UUID.match(raw):
        return None
    return uuid.UUID(raw)


def header_report(values: Sequence[str]) -> str | None:
    """What whoami and the logs show of the header: clipped, never trusted."""
    if not values:
        return None
    return ",".join(values)[:HEADER_REPORT_LIMIT]


def choose_org(
    env: Environment,
    session_org_id: uuid.UUID | None,
    header_values: Sequence[str],
    member_org_ids: Collection[uuid.UUID],
    default_org_id: uuid.UUID | None,
) -> OrgChoice:
    reported = header_report(header_values)
    header_org = None
    if env is not Environment.production:
        header_org = _member_header_org(header_values, member_org_ids)
    source, org = _pick(session_org_id, header_org, member_org_ids, default_org_id)
    return OrgChoice(
        effective_org_id=org,
        source=source,
        header_org_id=reported,
        header_ignored=bool(header_values) and source != "header",
    )


def _pick(
    session_org_id: uuid.UUID | None,
    header_org: uuid.UUID | None,
    member_org_ids: Collection[uuid.UUID],
    default_org_id: uuid.UUID | None,
) -> tuple[OrgSource | None, uuid.UUID | None]:
    if session_org_id is not None and session_org_id in member_org_ids:
        return "session", session_org_id
    if header_org is not None:
        return "header", header_org
    if default_org_id is not None and default_org_id in member_org_ids:
        return "user", default_org_id
    return None, None


def _member_header_org(
    values: Sequence[str], member_org_ids: Collection[uuid.UUID]
) -> uuid.UUID | None:
    if not values:
        return None
    if len(values) > 1:
        raise RequestError(
            400, "X-Org-Id header given more than once", "header_repeated"
        )
    org = parse_uuid(values[0].strip())
    if org is None:
        raise RequestError(400, "X-Org-Id header is not a uuid", "header_malformed")
    if org not in member_org_ids:
        raise RequestError(403, "Not a member of this org", "header_not_member")
    return org
