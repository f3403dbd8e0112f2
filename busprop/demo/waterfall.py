"""Rendering captured transactions as one trace's waterfall in a terminal.

Each transaction and each of its spans is a row; rows nest under their parent span id, which
crosses processes and buses exactly as Sentry's trace view would link them, and a bar shows when
each ran within the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BAR_WIDTH = 32


def _seconds(timestamp: Any) -> float:
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()


@dataclass
class Row:
    span_id: str
    parent_span_id: str | None
    op: str
    name: str
    start: float
    end: float
    is_transaction: bool
    status: str | None = None
    children: list[Row] = field(default_factory=list)


def rows_of(transactions: list[dict[str, Any]], trace_id: str) -> list[Row]:
    rows: list[Row] = []
    for event in transactions:
        trace = event.get("contexts", {}).get("trace", {})
        if trace.get("trace_id") != trace_id:
            continue
        rows.append(
            Row(
                trace["span_id"],
                trace.get("parent_span_id"),
                trace.get("op") or "",
                event.get("transaction") or "",
                _seconds(event["start_timestamp"]),
                _seconds(event["timestamp"]),
                True,
                trace.get("status"),
            )
        )
        for span in event.get("spans", []):
            rows.append(
                Row(
                    span["span_id"],
                    span.get("parent_span_id"),
                    span.get("op") or "",
                    span.get("description") or "",
                    _seconds(span["start_timestamp"]),
                    _seconds(span["timestamp"]),
                    False,
                    span.get("status"),
                )
            )
    return rows


def build_tree(rows: list[Row]) -> list[Row]:
    """Link rows to their parents; rows whose parent is not captured become roots."""
    by_id = {row.span_id: row for row in rows}
    roots = []
    for row in sorted(rows, key=lambda r: r.start):
        parent = by_id.get(row.parent_span_id or "")
        if parent is None or parent is row:
            roots.append(row)
        else:
            parent.children.append(row)
    return roots


def render(transactions: list[dict[str, Any]], trace_id: str) -> str:
    rows = rows_of(transactions, trace_id)
    if not rows:
        return f"trace {trace_id}: nothing captured"
    roots = build_tree(rows)
    start = min(row.start for row in rows)
    total = max(max(row.end for row in rows) - start, 1e-9)
    count = sum(1 for row in rows if row.is_transaction)
    lines = [
        f"trace {trace_id}  ({count} transactions, {len(rows) - count} spans, {total * 1000:.1f} ms)",
        "",
    ]

    def walk(row: Row, prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        kind = "▶" if row.is_transaction else "·"
        label = f"{prefix}{branch}{kind} {row.op}  {row.name}"
        offset = int((row.start - start) / total * BAR_WIDTH)
        width = max(1, round((row.end - row.start) / total * BAR_WIDTH))
        bar = " " * offset + "█" * min(width, BAR_WIDTH - offset)
        status = "" if row.status in (None, "ok") else f"  [{row.status}]"
        ids = f"span {row.span_id} ← {row.parent_span_id or 'root'}"
        duration = (row.end - row.start) * 1000
        lines.append(f"{label:<64.64} {duration:8.2f} ms |{bar:<{BAR_WIDTH}}| {ids}{status}")
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for index, child in enumerate(row.children):
            walk(child, child_prefix, index == len(row.children) - 1, depth + 1)

    for root in roots:
        walk(root, "", True, 0)
    lines.append("")
    lines.append("▶ transaction (one per process hop)   · span inside a transaction")
    return "\n".join(lines)
