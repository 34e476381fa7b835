"""SQL pieces about offenders and row keys, shared by audit, repair and retype.

An offender is a non-null child value with no parent row. For a text column
whose parent key is uuid or an integer, the value is first normalised the way
`retype` would convert it, so blanks and malformed values count as offenders
and whitespace-padded keys of existing parents do not.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from orgsafe.integrity.catalog import Target
from orgsafe.integrity.session import Session


def column(target: Target, alias: str, name: str | None = None) -> sql.Composable:
    return sql.SQL("{}.{}").format(
        sql.Identifier(alias), sql.Identifier(name or target.column.name)
    )


def offender(target: Target, alias: str = "c") -> sql.Composable:
    value = column(target, alias)
    return sql.SQL(
        "({v} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {parent} p "
        "WHERE p.{pcol} = {conv}))"
    ).format(
        v=value,
        parent=target.parent.ident,
        pcol=sql.Identifier(target.parent_column.name),
        conv=target.conversion.converted(value),
    )


def offender_reason(target: Target, alias: str = "c") -> sql.Composable:
    """Why a value offends: the conversion problem, else no parent row."""
    reason = target.conversion.reason(column(target, alias))
    return sql.SQL("coalesce({}, 'no parent row')").format(reason)


def key_list(target: Target, alias: str | None = None) -> sql.Composable:
    names = [
        sql.Identifier(alias, key.name) if alias else sql.Identifier(key.name)
        for key in target.row_key
    ]
    return sql.SQL("({})").format(sql.SQL(", ").join(names))


def key_order(target: Target, alias: str, descending: bool = False) -> sql.Composable:
    direction = sql.SQL(" DESC" if descending else "")
    return sql.SQL(", ").join(
        sql.SQL("{}{}").format(sql.Identifier(alias, key.name), direction)
        for key in target.row_key
    )


def key_json(target: Target, alias: str) -> sql.Composable:
    parts = [
        sql.SQL("{}, {}").format(sql.Literal(key.name), sql.Identifier(alias, key.name))
        for key in target.row_key
    ]
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts))


def origin(run_id: object, target: Target) -> dict[str, sql.Composable]:
    """The literals a quarantine row names its value's source with.

    Keys: run, ref, schema, table, col_name, type; spread them into `format`.
    """
    return {
        "run": sql.Literal(str(run_id)),
        "ref": sql.Literal(target.name),
        "schema": sql.Literal(target.child.schema),
        "table": sql.Literal(target.child.name),
        "col_name": sql.Literal(target.column.name),
        "type": sql.Literal(target.column.type_name),
    }


def after_key(target: Target, alias: str) -> sql.Composable:
    """`(keys) > (placeholders)`: the keyset condition for the next batch."""
    holders = [
        sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(key.type_name))
        for key in target.row_key
    ]
    return sql.SQL("{} > ({})").format(
        key_list(target, alias), sql.SQL(", ").join(holders)
    )


def same_key(target: Target, left: str, right: str) -> sql.Composable:
    return sql.SQL("{} = {}").format(key_list(target, left), key_list(target, right))


def count(session: Session, target: Target) -> int:
    (found,) = session.one(
        sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(
            target.child.ident, offender(target)
        ),
        (),
        f"counting offenders of {target.name}",
    )
    return int(found)


def samples(
    session: Session, target: Target, limit: int, only_offenders: bool = False
) -> list[dict[str, Any]]:
    """Offenders and values that will not convert as they stand, by key."""
    wanted = offender(target)
    if not only_offenders:
        wanted = sql.SQL("{} OR {} IS NOT NULL").format(wanted, _sample_reason(target))
    found = session.rows(
        sql.SQL(
            "SELECT {key}, c.{col}::text, {reason} FROM {child} c "
            "WHERE {wanted} ORDER BY {order} LIMIT %s"
        ).format(
            wanted=wanted,
            key=key_json(target, "c"),
            col=sql.Identifier(target.column.name),
            reason=_sample_reason(target),
            child=target.child.ident,
            order=key_order(target, "c"),
        ),
        (limit,),
        f"sampling offenders of {target.name}",
    )
    return [
        {"key": key, "value": value, "reason": reason} for key, value, reason in found
    ]


def _sample_reason(target: Target) -> sql.Composable:
    return sql.SQL("(CASE WHEN {} THEN {} ELSE {} END)").format(
        offender(target),
        offender_reason(target),
        target.conversion.reason(column(target, "c")),
    )
