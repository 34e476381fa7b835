"""Customers of one org.

A `CustomerStore` cannot be made without an org, and every statement names that org
in its WHERE clause on top of the row policy: a forgotten filter cannot happen here,
and if it did, row-level security would still hold the line.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row

from orgsafe.errors import OrgsafeError

PAGE_MAX = 100
UPDATABLE = frozenset({"name", "email"})
_COLUMNS = "id, org_id, name, email, created_at, updated_at"


class OrgMissing(OrgsafeError):
    """The org a write was meant for no longer exists."""


class BadCursor(OrgsafeError):
    """A pagination cursor that this service did not make."""


@dataclass(frozen=True)
class Customer:
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    email: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    items: list[Customer]
    next_cursor: str | None


def encode_cursor(customer: Customer) -> str:
    raw = json.dumps([customer.created_at.isoformat(), str(customer.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadCursor("cursor is malformed") from None


class CustomerStore:
    def __init__(self, conn: AsyncConnection[Any], org_id: uuid.UUID | None) -> None:
        if org_id is None:
            raise ValueError("a customer store needs an org")
        self._conn = conn
        self._org = org_id

    async def page(self, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor) if cursor else None
        async with self._conn.cursor(row_factory=class_row(Customer)) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM customers WHERE org_id = %(org)s"
                " AND (%(after)s::timestamptz IS NULL"
                "      OR (created_at, id) > (%(after)s, %(after_id)s::uuid))"
                " ORDER BY created_at, id LIMIT %(limit)s",
                {
                    "org": self._org,
                    "after": after[0] if after else None,
                    "after_id": after[1] if after else None,
                    "limit": limit + 1,
                },
            )
            rows = await cur.fetchall()
        more = len(rows) > limit
        items = rows[:limit]
        return Page(items, encode_cursor(items[-1]) if more else None)

    async def get(self, customer_id: uuid.UUID) -> Customer | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM customers WHERE id = %s AND org_id = %s",
            (customer_id, self._org),
        )

    async def create(self, name: str, email: str | None) -> Customer:
        # Re-checked in this transaction; the foreign key covers a delete that
        # lands between this check and the insert.
        cur = await self._conn.execute("SELECT 1 FROM orgs WHERE id = %s", (self._org,))
        if await cur.fetchone() is None:
            raise OrgMissing(f"org {self._org} does not exist")
        try:
            created = await self._one(
                f"INSERT INTO customers (org_id, name, email) VALUES (%s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (self._org, name, email),
            )
        except psycopg.errors.ForeignKeyViolation:
            raise OrgMissing(f"org {self._org} does not exist") from None
        assert created is not None
        return created

    async def update(
        self, customer_id: uuid.UUID, changes: dict[str, str | None]
    ) -> Customer | None:
        if not changes:
            return await self.get(customer_id)
        if not UPDATABLE.issuperset(changes):
            raise ValueError(f"not updatable: {sorted(set(changes) - UPDATABLE)}")
        assignments = ", ".join(f"{column} = %({column})s" for column in changes)
        return await self._one(
            f"UPDATE customers SET {assignments}, updated_at = now()"
            f" WHERE id = %(id)s AND org_id = %(org)s RETURNING {_COLUMNS}",
            {**changes, "id": customer_id, "org": self._org},
        )

    async def delete(self, customer_id: uuid.UUID) -> bool:
        cur = await self._conn.execute(
            "DELETE FROM customers WHERE id = %s AND org_id = %s",
            (customer_id, self._org),
        )
        return cur.rowcount > 0

    async def _one(self, query: str, params: Any) -> Customer | None:
        async with self._conn.cursor(row_factory=class_row(Customer)) as cur:
            await cur.execute(query, params)
            return await cur.fetchone()
