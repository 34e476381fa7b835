"""Administrative operations on orgs and users, run as the owner role."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from orgsafe.errors import UsageError
from orgsafe.storage import DatabaseTarget, connect, translate
from orgsafe.tenancy.passwords import hash_password, password_problem

EMAIL_MAX = 320
# No spaces, no control characters (NUL included: PostgreSQL text refuses it).
_PART = r"[^@\s\x00-\x1f\x7f]+"
_EMAIL = re.compile(rf"^{_PART}@{_PART}\.{_PART}$")


def normalise_email(raw: str) -> str:
    """Trimmed and lower-cased; refused if it does not look like an address."""
    email = raw.strip().lower()
    if len(email) > EMAIL_MAX or not _EMAIL.match(email):
        raise UsageError(f"email {raw!r} is not a valid address")
    return email


def parse_org_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise UsageError(f"org id {raw!r} is not a uuid") from None


def create_org(
    target: DatabaseTarget, name: str, org_id: uuid.UUID | None = None
) -> uuid.UUID:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise UsageError("org name must be 1 to 200 characters")
    with connect(target.owner_url) as conn:
        try:
            row = conn.execute(
                "INSERT INTO orgs (id, name)"
                " VALUES (coalesce(%s, gen_random_uuid()), %s) RETURNING id",
                (org_id, name),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise UsageError(f"org {org_id} already exists") from None
        except psycopg.Error as exc:
            translate(exc, "cannot create org")
    assert row is not None
    return uuid.UUID(str(row[0]))


@dataclass(frozen=True)
class NewUser:
    id: uuid.UUID
    email: str
    default_org_id: uuid.UUID | None


def create_user(
    target: DatabaseTarget,
    email: str,
    password: str,
    org_ids: Sequence[uuid.UUID],
    role: str = "member",
) -> NewUser:
    """A user with memberships in `org_ids`; the first is the default org."""
    email = normalise_email(email)
    problem = password_problem(password)
    if problem:
        raise UsageError(problem)
    default = org_ids[0] if org_ids else None
    with connect(target.owner_url) as conn:
        _require_orgs(conn, org_ids)
        try:
            row = conn.execute(
                "INSERT INTO users (email, password_hash, default_org_id)"
                " VALUES (%s, %s, %s) RETURNING id",
                (email, hash_password(password), default),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise UsageError(f"a user with email {email} already exists") from None
        assert row is not None
        user_id = uuid.UUID(str(row[0]))
        # Memberships are under forced row security, the owner included.
        conn.execute("SELECT set_config('app.user_id', %s, true)", (str(user_id),))
        for org_id in dict.fromkeys(org_ids):
            conn.execute(
                "INSERT INTO memberships (user_id, org_id, role) VALUES (%s, %s, %s)",
                (user_id, org_id, role),
            )
    return NewUser(user_id, email, default)


def _require_orgs(
    conn: psycopg.Connection[tuple[object, ...]], org_ids: Sequence[uuid.UUID]
) -> None:
    for org_id in org_ids:
        found = conn.execute("SELECT 1 FROM orgs WHERE id = %s", (org_id,)).fetchone()
        if not found:
            raise UsageError(f"--org {org_id}: no such org")
