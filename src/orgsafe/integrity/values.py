"""How a child value compares with, and converts into, its parent's key type.

PostgreSQL 15 has no pg_input_is_valid(), so validity is decided by regular
expressions that mirror the server's input rules: a uuid is 32 hex digits,
either case, with an optional hyphen after any group of four and optional
surrounding braces, and no whitespace at all. Integers are checked for range
through numeric, which accepts any length of digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from psycopg import sql

from orgsafe.errors import UsageError

# Spaces, tabs, newlines, carriage returns, form and vertical feeds.
WHITESPACE = " \t\n\r\f\x0b"
_WS = sql.SQL(r"E' \t\n\r\f\x0b'")
_UUID_BODY = r"(?:[0-9a-f]{4}-?){7}[0-9a-f]{4}"
UUID_PATTERN = rf"^(?:\{{{_UUID_BODY}\}}|{_UUID_BODY})$"
UUID_LOOKALIKE = r"^\{?[0-9a-f-]*\}?$"
INTEGER_PATTERN = r"^[+-]?[0-9]+$"
INTEGER_BOUNDS = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_STRING_TYPES = ("text", "character varying", "character", "varchar", "bpchar")


class Family(StrEnum):
    uuid = "uuid"
    integer = "integer"
    text = "text"


def family_of(type_name: str) -> Family | None:
    base = type_name.split("(")[0].strip()
    if base == "uuid":
        return Family.uuid
    if base in INTEGER_BOUNDS:
        return Family.integer
    if base in _STRING_TYPES:
        return Family.text
    return None


@dataclass(frozen=True)
class Conversion:
    """The child column's type against the parent key's type."""

    child_type: str
    parent_type: str
    # pg_input_is_valid() exists (PostgreSQL 16+): far cheaper than a regex.
    input_check: bool = False

    @property
    def child_family(self) -> Family | None:
        return family_of(self.child_type)

    @property
    def parent_family(self) -> Family | None:
        return family_of(self.parent_type)

    @property
    def needs_retype(self) -> bool:
        return self.child_family is Family.text and self.parent_family in (
            Family.uuid,
            Family.integer,
        )

    @property
    def comparable(self) -> bool:
        return self.child_family is not None and (
            self.child_family is self.parent_family
        )

    def check_supported(self, label: str, parent_label: str) -> None:
        if self.parent_family is None:
            raise UsageError(
                f"{parent_label} is {self.parent_type}: supported key types are "
                "uuid, smallint, integer, bigint and text"
            )
        if not (self.comparable or self.needs_retype):
            raise UsageError(
                f"{label} is {self.child_type} and {parent_label} is "
                f"{self.parent_type}: no conversion between them"
            )

    def normalised(self, value: sql.Composable) -> sql.Composable:
        """The text a retype would try to convert: trimmed, lower-case for uuid."""
        trimmed = sql.SQL("btrim({}, {})").format(value, _WS)
        if self.parent_family is Family.uuid:
            return sql.SQL("lower({})").format(trimmed)
        return trimmed

    def valid(self, text: sql.Composable) -> sql.Composable:
        """True when normalised text converts; never raises."""
        if self.input_check:
            return self._input_valid(text)
        if self.parent_family is Family.uuid:
            return sql.SQL("({} ~ {})").format(text, sql.Literal(UUID_PATTERN))
        low, high = INTEGER_BOUNDS[self.parent_type]
        # CASE, not AND: the cast must only run on digits.
        return sql.SQL(
            "(CASE WHEN {t} ~ {p} THEN {t}::numeric BETWEEN {lo} AND {hi} "
            "ELSE false END)"
        ).format(
            t=text,
            p=sql.Literal(INTEGER_PATTERN),
            lo=sql.Literal(low),
            hi=sql.Literal(high),
        )

    def converted(self, value: sql.Composable) -> sql.Composable:
        """The value as the parent's type, or NULL when it will not convert."""
        if not self.needs_retype:
            return value
        text = self.normalised(value)
        target = sql.SQL(self.parent_type)
        if self.input_check:
            # Most values convert as they stand; normalise only the others.
            return sql.SQL(
                "(CASE WHEN {ok} THEN {v}::{t} WHEN {ok_text} THEN {text}::{t} END)"
            ).format(
                ok=self._input_valid(value),
                v=value,
                t=target,
                ok_text=self._input_valid(text),
                text=text,
            )
        return sql.SQL("(CASE WHEN {} THEN {}::{} END)").format(
            self.valid(text), text, target
        )

    def _input_valid(self, text: sql.Composable) -> sql.Composable:
        return sql.SQL("pg_input_is_valid({}, {})").format(
            text, sql.Literal(self.parent_type)
        )

    def blank(self, value: sql.Composable) -> sql.Composable:
        return sql.SQL("(btrim({}, {}) = '')").format(value, _WS)

    def unconvertible(self, value: sql.Composable) -> sql.Composable:
        """Non-null, not blank, and no conversion: what a retype quarantines."""
        if not self.needs_retype:
            return sql.SQL("false")
        return sql.SQL("({v} IS NOT NULL AND NOT {b} AND NOT {ok})").format(
            v=value, b=self.blank(value), ok=self.valid(self.normalised(value))
        )

    def reason(
        self, value: sql.Composable, converted: sql.Composable | None = None
    ) -> sql.Composable:
        """Why a value will not convert as it stands; NULL when it will.

        `converted`, when given, is the value already converted, which saves
        evaluating the validity check a second time on every row.
        """
        if not self.needs_retype:
            return sql.SQL("NULL::text")
        text = self.normalised(value)
        ok = self.valid(text)
        if converted is not None:
            ok = sql.SQL("({} IS NOT NULL)").format(converted)
        first: sql.Composable = sql.SQL("")
        if self.input_check:
            first = sql.SQL("WHEN {} THEN NULL ").format(self._input_valid(value))
        return sql.SQL(
            "(CASE WHEN {v} IS NULL THEN NULL {first}WHEN {v} = '' THEN 'empty' "
            "WHEN {b} THEN 'blank' WHEN {ok} THEN {fixable} ELSE {bad} END)"
        ).format(
            v=value,
            first=first,
            b=self.blank(value),
            ok=ok,
            fixable=self._fixable_reason(value),
            bad=self._bad_reason(text),
        )

    def _fixable_reason(self, value: sql.Composable) -> sql.Composable:
        if self.parent_family is Family.uuid:
            # The uuid parser rejects any whitespace; integers allow it.
            return sql.SQL(
                "(CASE WHEN btrim({v}, {ws}) <> {v} THEN 'surrounding whitespace' END)"
            ).format(v=value, ws=_WS)
        return sql.SQL("NULL::text")

    def _bad_reason(self, text: sql.Composable) -> sql.Composable:
        if self.parent_family is Family.uuid:
            return sql.SQL(
                "(CASE WHEN {} ~ {} THEN 'wrong length' ELSE 'not a uuid' END)"
            ).format(text, sql.Literal(UUID_LOOKALIKE))
        return sql.SQL(
            "(CASE WHEN {} ~ {} THEN 'out of range' ELSE 'not an integer' END)"
        ).format(text, sql.Literal(INTEGER_PATTERN))
