"""Marks which queries an evaluation ranks: judged ones with usable text.

Column contract:
- needs `id`, `text`, `reject_reason` (see `read/parquet_source`).
- adds `judged` (bool: the id has a relevant judgement) and `action` (`new` for judged queries
  with usable text; null otherwise); `reject_reason` gains `null_query` / `empty_query`
  (a judged query that cannot be ranked scores 0, as it would for a user).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.prepare.row_validator import mark_blank

REQUIRED = ("id", "text", "reject_reason")


def mark_queries(batch: pa.Table, judged: frozenset[str]) -> pa.Table:
    """The operator (a plain function: Ray runs it as tasks); `judged`: the query ids with judgements."""
    require_columns(batch, REQUIRED, "QueryMarker")
    reason = mark_blank(batch.column("reject_reason"), batch.column("text"), "null_query", "empty_query")
    is_judged = pc.is_in(batch.column("id"), pa.array(sorted(judged), pa.string()))
    batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
    action = pc.if_else(pc.and_(pc.fill_null(is_judged, False), pc.is_null(reason)), pa.scalar("new"),
                        pa.scalar(None, pa.string()))
    return batch.append_column("judged", pc.fill_null(is_judged, False)).append_column("action", action)
