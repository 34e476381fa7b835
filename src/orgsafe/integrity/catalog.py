"""What the catalog says about a reference: tables, columns, keys, constraints.

Everything here is read fresh on each call, because the steps change the
catalog (a retype swaps a column, a constrain adds a key) and each step must
act on what is there now, not on what was there when the command started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from psycopg import sql

from orgsafe.errors import UsageError
from orgsafe.integrity.refs import ColumnPath, OrphanAction, Reference
from orgsafe.integrity.session import Session
from orgsafe.integrity.values import Conversion


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Column:
    name: str
    attnum: int
    type_name: str
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class KeyColumn:
    name: str
    type_name: str


@dataclass(frozen=True)
class Target:
    """A reference resolved against the catalog."""

    ref: Reference
    child: Table
    column: Column
    parent: Table
    parent_column: Column
    row_key: tuple[KeyColumn, ...]
    input_check: bool = False

    @property
    def label(self) -> str:
        return f"{self.child}.{self.column.name}"

    @property
    def parent_label(self) -> str:
        return f"{self.parent}.{self.parent_column.name}"

    @property
    def name(self) -> str:
        return f"{self.label}={self.parent_label}"

    @property
    def conversion(self) -> Conversion:
        return Conversion(
            self.column.type_name, self.parent_column.type_name, self.input_check
        )

    @property
    def on_orphan(self) -> OrphanAction | None:
        return self.ref.on_orphan


@dataclass(frozen=True)
class ForeignKey:
    name: str
    parent_oid: int
    parent_attnum: int
    on_update: str
    on_delete: str
    validated: bool
    definition: str


def resolve(session: Session, ref: Reference, flag: str = "--ref") -> Target:
    """Check a reference against the catalog; every failure is a usage error."""
    child = _table(session, ref.child, ref, flag)
    parent = _table(session, ref.parent, ref, flag)
    column = read_column(session, child, ref.child.column, ref, flag)
    parent_column = read_column(session, parent, ref.parent.column, ref, flag)
    if not _is_unique(session, parent, parent_column.attnum):
        raise UsageError(
            f"{flag} {ref}: {parent}.{parent_column.name} is not unique; "
            "a reference needs a primary key or unique index on the parent column"
        )
    key = _row_key(session, child)
    fast = session.server_version >= 160000
    target = Target(ref, child, column, parent, parent_column, key, fast)
    target.conversion.check_supported(target.label, target.parent_label)
    _check_visibility(session, child, ref, flag)
    return target


def refresh(session: Session, target: Target) -> Target:
    """The same reference with its child column read again."""
    column = read_column(session, target.child, target.column.name, target.ref, "--ref")
    return dataclasses.replace(target, column=column)


def _table(session: Session, path: ColumnPath, ref: Reference, flag: str) -> Table:
    name = sql.Identifier(path.table)
    if path.schema:
        name = sql.Identifier(path.schema, path.table)
    text = session.render(name)
    found = session.rows(
        "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (text,),
        "looking up a table",
    )
    if not found:
        raise UsageError(f"{flag} {ref}: table {text} does not exist")
    oid, schema, relname, relkind = found[0]
    if relkind not in ("r", "p"):
        raise UsageError(f"{flag} {ref}: {text} is not a table (relkind {relkind})")
    return Table(int(oid), str(schema), str(relname))


def read_column(
    session: Session, table: Table, name: str, ref: Reference, flag: str
) -> Column:
    found = session.rows(
        "SELECT attname, attnum, format_type(atttypid, atttypmod), attnotnull, "
        "atthasdef FROM pg_attribute WHERE attrelid = %s AND attname = %s "
        "AND attnum > 0 AND NOT attisdropped",
        (table.oid, name),
        "looking up a column",
    )
    if not found:
        raise UsageError(f"{flag} {ref}: column {table}.{name} does not exist")
    attname, attnum, type_name, not_null, has_default = found[0]
    return Column(
        str(attname), int(attnum), str(type_name), bool(not_null), bool(has_default)
    )


def _is_unique(session: Session, table: Table, attnum: int) -> bool:
    found = session.rows(
        "SELECT 1 FROM pg_index WHERE indrelid = %s AND indisunique "
        "AND indimmediate AND indnkeyatts = 1 AND indkey[0] = %s "
        "AND indpred IS NULL AND indexprs IS NULL",
        (table.oid, attnum),
        "looking up unique indexes",
    )
    return bool(found)


def _row_key(session: Session, table: Table) -> tuple[KeyColumn, ...]:
    """The primary key, else a unique index over NOT NULL columns."""
    found = session.rows(
        "SELECT i.indexrelid, a.attname, format_type(a.atttypid, a.atttypmod), "
        "  NOT i.indisprimary AS rank "
        "FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY "
        "  AS k(attnum, pos) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL "
        "  AND i.indexprs IS NULL "
        "  AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey[0:i.indnkeyatts - 1]) u(n) "
        "    JOIN pg_attribute b ON b.attrelid = i.indrelid AND b.attnum = u.n "
        "    WHERE NOT b.attnotnull) "
        "ORDER BY rank, i.indexrelid, k.pos",
        (table.oid,),
        "looking up the row key",
    )
    if not found:
        raise UsageError(
            f"table {table} has no primary key or unique index over NOT NULL "
            "columns: orgsafe needs one to name each row it changes"
        )
    first = found[0][0]
    return tuple(KeyColumn(str(r[1]), str(r[2])) for r in found if r[0] == first)


def _check_visibility(
    session: Session, table: Table, ref: Reference, flag: str
) -> None:
    # Forced row-level security would hide other orgs' rows from the audit.
    hidden = session.rows(
        "SELECT 1 FROM pg_class c, pg_roles r WHERE c.oid = %s AND c.relrowsecurity "
        "AND r.rolname = current_user AND NOT (r.rolsuper OR r.rolbypassrls) "
        "AND (c.relforcerowsecurity OR c.relowner <> r.oid)",
        (table.oid,),
        "checking row-level security",
    )
    if hidden:
        raise UsageError(
            f"{flag} {ref}: {table} has row-level security and the connecting role "
            "would see only some rows; connect as a superuser or a BYPASSRLS role"
        )


def foreign_keys(session: Session, target: Target) -> list[ForeignKey]:
    """Single-column foreign keys from the child column to the parent table."""
    found = session.rows(
        "SELECT conname, confrelid, confkey[1], confupdtype, confdeltype, "
        "convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = %s AND conkey = ARRAY[%s]::int2[] "
        "AND confrelid = %s ORDER BY conname",
        (target.child.oid, target.column.attnum, target.parent.oid),
        "reading foreign keys",
    )
    return [
        ForeignKey(str(n), int(p), int(a), str(u), str(d), bool(v), str(text))
        for n, p, a, u, d, v, text in found
    ]


def constraint_exists(session: Session, table: Table, name: str) -> bool:
    return bool(
        session.rows(
            "SELECT 1 FROM pg_constraint WHERE conrelid = %s AND conname = %s",
            (table.oid, name),
            "reading constraints",
        )
    )


def column_exists(session: Session, table: Table, name: str) -> bool:
    return bool(
        session.rows(
            "SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = %s "
            "AND NOT attisdropped",
            (table.oid, name),
            "reading columns",
        )
    )


def index_on(session: Session, table: Table, attnum: int) -> str | None:
    """An index whose first column is the given one, if any."""
    found = session.rows(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s "
        "AND indkey[0] = %s AND indpred IS NULL ORDER BY indnkeyatts LIMIT 1",
        (table.oid, attnum),
        "reading indexes",
    )
    return str(found[0][0]) if found else None


def size_of(session: Session, table: Table) -> tuple[int, int]:
    """Estimated rows (from statistics) and bytes of the table."""
    rows, size = session.one(
        "SELECT reltuples::bigint, pg_table_size(oid) FROM pg_class WHERE oid = %s",
        (table.oid,),
        "reading table size",
    )
    if int(rows) < 0:
        # Never analysed: count once rather than guess.
        (rows,) = session.one(
            sql.SQL("SELECT count(*) FROM {}").format(table.ident), (), "counting rows"
        )
    return int(rows), int(size)
