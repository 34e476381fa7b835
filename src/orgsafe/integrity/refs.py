"""References (`CHILD.COL=PARENT.COL`), the orphan action, and where they come from.

A reference names a child column that should point at a unique parent column.
It comes from `--ref`, from a config file, or, with neither, from the service's
own tenant references.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from orgsafe.errors import UsageError

_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_COLUMN_PATH = re.compile(rf"^(?:({_IDENT})\.)?({_IDENT})\.({_IDENT})$")

SERVICE_REFS = (
    "public.customers.org_id=public.orgs.id",
    "public.memberships.org_id=public.orgs.id",
    "public.sessions.org_id=public.orgs.id",
    "public.users.default_org_id=public.orgs.id",
)

FK_ACTIONS = {
    "restrict": "r",
    "cascade": "c",
    "set-null": "n",
    "set-default": "d",
    "no-action": "a",
}
FK_ACTION_SQL = {
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
    "a": "NO ACTION",
}


@dataclass(frozen=True)
class ColumnPath:
    schema: str | None
    table: str
    column: str

    def __str__(self) -> str:
        prefix = f"{self.schema}." if self.schema else ""
        return f"{prefix}{self.table}.{self.column}"


@dataclass(frozen=True)
class Reference:
    child: ColumnPath
    parent: ColumnPath
    on_orphan: OrphanAction | None = None

    def __str__(self) -> str:
        return f"{self.child}={self.parent}"


class OrphanKind(StrEnum):
    null = "null"
    quarantine = "quarantine"
    reassign = "reassign"


@dataclass(frozen=True)
class OrphanAction:
    kind: OrphanKind
    value: str | None = None

    def __str__(self) -> str:
        if self.kind is OrphanKind.reassign:
            return f"reassign:{self.value}"
        return self.kind.value


def parse_orphan_action(raw: str, flag: str = "--on-orphan") -> OrphanAction:
    text = raw.strip()
    if text in ("null", "quarantine"):
        return OrphanAction(OrphanKind(text))
    if text.startswith("reassign:") and text[len("reassign:") :].strip():
        return OrphanAction(OrphanKind.reassign, text[len("reassign:") :].strip())
    raise UsageError(f"{flag} {raw!r}: expected null, quarantine or reassign:VALUE")


def parse_fk_action(raw: str | None, flag: str) -> str | None:
    """The pg_constraint letter for an ON DELETE / ON UPDATE flag, or None."""
    if raw is None:
        return None
    key = raw.strip().lower().replace(" ", "-").replace("_", "-")
    if key not in FK_ACTIONS:
        choices = ", ".join(FK_ACTIONS)
        raise UsageError(f"{flag} {raw!r}: expected one of {choices}")
    return FK_ACTIONS[key]


def _unquote(ident: str) -> str:
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    # Unquoted identifiers fold to lower case, as in SQL.
    return ident.lower()


def _column_path(text: str, raw: str, flag: str) -> ColumnPath:
    match = _COLUMN_PATH.match(text.strip())
    if not match:
        raise UsageError(
            f"{flag} {raw!r}: expected CHILD.COL=PARENT.COL, "
            "tables optionally schema-qualified"
        )
    schema, table, column = match.groups()
    return ColumnPath(
        _unquote(schema) if schema else None, _unquote(table), _unquote(column)
    )


def parse_reference(
    raw: str, flag: str = "--ref", on_orphan: OrphanAction | None = None
) -> Reference:
    child, sep, parent = raw.partition("=")
    if not sep or "=" in parent:
        raise UsageError(f"{flag} {raw!r}: expected CHILD.COL=PARENT.COL")
    return Reference(
        _column_path(child, raw, flag), _column_path(parent, raw, flag), on_orphan
    )


def load_config_refs(path: Path) -> list[Reference]:
    """References from `[tool.orgsafe.integrity]` (or `[orgsafe.integrity]`).

    `refs` is a list of `"CHILD.COL=PARENT.COL"` strings or of tables with
    `ref` and an optional `on_orphan`.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not valid TOML: {exc}") from exc
    section = _integrity_section(data)
    if section is None:
        raise UsageError(f"--config {path}: no [tool.orgsafe.integrity] table")
    entries = section.get("refs")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"--config {path}: integrity.refs must be a non-empty list")
    return [_config_entry(entry, path) for entry in entries]


def _integrity_section(data: dict[str, Any]) -> dict[str, Any] | None:
    for keys in (("tool", "orgsafe", "integrity"), ("orgsafe", "integrity")):
        node: Any = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    return None


def _config_entry(entry: object, path: Path) -> Reference:
    flag = f"--config {path}: refs"
    if isinstance(entry, str):
        return parse_reference(entry, flag)
    if isinstance(entry, dict) and isinstance(entry.get("ref"), str):
        action = entry.get("on_orphan")
        parsed = (
            parse_orphan_action(action, f"{flag} on_orphan")
            if isinstance(action, str)
            else None
        )
        return parse_reference(entry["ref"], flag, parsed)
    raise UsageError(f"{flag}: entry {entry!r} is neither a string nor a table")


def select_references(raw_refs: list[str], config: Path | None) -> list[Reference]:
    refs = [parse_reference(raw) for raw in raw_refs]
    if config is not None:
        refs.extend(load_config_refs(config))
    if not refs:
        refs = [parse_reference(raw, "default reference") for raw in SERVICE_REFS]
    return refs
