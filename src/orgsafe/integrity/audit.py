"""`audit` and `gate`: count offenders and values that will not convert.

Read-only: these steps take no lock beyond what a SELECT takes and change
nothing, so a pipeline may run them against production at any time.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from orgsafe.integrity import offenders
from orgsafe.integrity.catalog import Target, foreign_keys, index_on, size_of
from orgsafe.integrity.context import Context

# A rough sequential read rate, to turn a table's size into a scan estimate.
SCAN_BYTES_PER_SECOND = 200 * 1024 * 1024


def audit(ctx: Context, target: Target) -> dict[str, Any]:
    session = ctx.session
    rows, size = size_of(session, target.child)
    by_reason = _reasons(ctx, target)
    index = index_on(session, target.child, target.column.attnum)
    result: dict[str, Any] = {
        "reference": target.name,
        "column_type": target.column.type_name,
        "parent_type": target.parent_column.type_name,
        "needs_retype": target.conversion.needs_retype,
        "rows_estimate": rows,
        "offenders": sum(n for n, _ in by_reason.values()),
        "will_not_convert": {r: total for r, (_, total) in by_reason.items() if r},
        "samples": offenders.samples(session, target, ctx.options.samples),
        "index": index,
        "full_scan_estimate_s": round(size / SCAN_BYTES_PER_SECOND, 2),
        "foreign_keys": [
            {"name": fk.name, "validated": fk.validated, "definition": fk.definition}
            for fk in foreign_keys(session, target)
        ],
    }
    if index is None:
        result["wanted_index"] = _wanted_index(ctx, target)
    return result


def _reasons(ctx: Context, target: Target) -> dict[str, tuple[int, int]]:
    """Per conversion problem (or '' for none): offenders and all values."""
    value = offenders.column(target, "s", "value")
    converted = offenders.column(target, "s", "converted")
    # OFFSET 0 keeps the conversion (a regular expression) to one run per row.
    found = ctx.session.rows(
        sql.SQL(
            "SELECT coalesce(reason, ''), count(*) FILTER (WHERE offends), count(*) "
            "FROM (SELECT {reason} AS reason, {value} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM {parent} p WHERE p.{pcol} = {converted}) AS offends "
            "FROM (SELECT c.{col} AS value, {conv} AS converted FROM {child} c "
            "OFFSET 0) s) r WHERE offends OR reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).format(
            reason=target.conversion.reason(value, converted),
            value=value,
            parent=target.parent.ident,
            pcol=sql.Identifier(target.parent_column.name),
            converted=converted,
            col=sql.Identifier(target.column.name),
            conv=target.conversion.converted(offenders.column(target, "c")),
            child=target.child.ident,
        ),
        (),
        f"auditing {target.name}",
    )
    return {str(r): (int(bad), int(total)) for r, bad, total in found}


def _wanted_index(ctx: Context, target: Target) -> str:
    name = f"{target.child.name}_{target.column.name}_idx"[:63]
    return ctx.session.render(
        sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} ({})").format(
            sql.Identifier(name), target.child.ident, sql.Identifier(target.column.name)
        )
    )


def describe(result: dict[str, Any]) -> list[str]:
    """Lines for people, one reference at a time."""
    lines = [
        f"{result['reference']}: {result['offenders']} offenders "
        f"({result['column_type']} -> {result['parent_type']}, "
        f"~{result['rows_estimate']} rows)"
    ]
    for reason, total in result["will_not_convert"].items():
        lines.append(f"  will not convert as it stands: {total} {reason}")
    for sample in result["samples"]:
        lines.append(f"  {sample['key']} {sample['value']!r}: {sample['reason']}")
    if result["index"]:
        lines.append(f"  index used: {result['index']}")
    else:
        lines.append(f"  no index on the column; wanted: {result['wanted_index']}")
    lines.append(f"  full scan: about {result['full_scan_estimate_s']}s")
    for fk in result["foreign_keys"]:
        state = "valid" if fk["validated"] else "NOT VALID"
        lines.append(f"  foreign key {fk['name']} ({state}): {fk['definition']}")
    return lines
