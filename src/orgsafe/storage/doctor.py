"""Checks that the database really holds the walls the service relies on.

A failure names the object and what is wrong with it. `orgsafe doctor` prints them
for a deploy pipeline; `orgsafe serve` runs the same checks at start and, in
production, refuses to serve while any fails.

Definitions, read from the catalog of the schema `public`:
- a tenant table is a table with an `org_id` column;
- a tenant reference is a column named `org_id` or ending in `_org_id` in any
  table but `orgs` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from orgsafe.storage.database import DatabaseTarget, connect, translate

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True)
class Failure:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


def examine(target: DatabaseTarget) -> list[Failure]:
    try:
        with connect(target.admin_url) as conn:
            return [
                *_role_failures(conn, target.app_role),
                *_table_failures(conn, target.app_role),
                *_reference_failures(conn),
            ]
    except psycopg.Error as exc:
        translate(exc, "cannot read the catalog")


def _role_failures(conn: Conn, role: str) -> list[Failure]:
    row = conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None:
        return [Failure("app-role", role, "role does not exist")]
    found = []
    if row[0]:
        found.append(
            Failure("app-role", role, "is a superuser: row security is skipped")
        )
    if row[1]:
        found.append(
            Failure("app-role", role, "has BYPASSRLS: row security is skipped")
        )
    return found


TENANT_TABLES = """
SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner),
       c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
       pg_has_role(%s, c.relowner, 'USAGE')
FROM pg_class c
JOIN pg_attribute a
  ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY 1
"""


def _table_failures(conn: Conn, role: str) -> list[Failure]:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if exists.fetchone() is None:
        return []
    found = []
    for table, owner, enabled, forced, policies, owns in conn.execute(
        TENANT_TABLES, (role,)
    ):
        subject = str(table)
        if owns:
            found.append(
                Failure("tenant-table", subject, f"{role} owns it or inherits {owner}")
            )
        if not enabled:
            found.append(Failure("tenant-table", subject, "row security is disabled"))
        elif not forced:
            found.append(Failure("tenant-table", subject, "row security is not forced"))
        if not policies:
            found.append(Failure("tenant-table", subject, "has no policy"))
    return found


TENANT_REFERENCES = """
SELECT a.attrelid::regclass::text, a.attname,
       EXISTS (
           SELECT 1 FROM pg_constraint k
           WHERE k.contype = 'f' AND k.conrelid = a.attrelid
             AND k.conkey = ARRAY[a.attnum] AND k.confrelid = 'public.orgs'::regclass
             AND k.convalidated
       ),
       EXISTS (
           SELECT 1 FROM pg_constraint k
           WHERE k.contype = 'f' AND k.conrelid = a.attrelid
             AND k.conkey = ARRAY[a.attnum] AND k.confrelid = 'public.orgs'::regclass
       )
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname <> 'orgs' AND a.attnum > 0 AND NOT a.attisdropped
  AND (a.attname = 'org_id' OR a.attname LIKE '%%\\_org\\_id')
ORDER BY 1, 2
"""


def _reference_failures(conn: Conn) -> list[Failure]:
    if conn.execute("SELECT to_regclass('public.orgs')").fetchone() == (None,):
        return [Failure("tenant-reference", "orgs", "table does not exist")]
    found = []
    for table, column, valid, present in conn.execute(TENANT_REFERENCES):
        subject = f"{table}.{column}"
        if valid:
            continue
        detail = "foreign key is not validated" if present else "no foreign key"
        found.append(Failure("tenant-reference", subject, f"{detail} to orgs(id)"))
    return found
