"""Marks which (query, positive) pairs can be mined for hard negatives.

Column contract:
- needs `text` (the query), `reject_reason` (see `read/parquet_source`) and the positive's
  source column (named by the caller).
- replaces the positive's column by `positive` (string); adds `action` (`new` for pairs to
  mine, null otherwise); `reject_reason` gains `null_query` / `empty_query` /
  `null_positive` / `empty_positive`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.prepare.row_validator import mark_blank


def mark_pairs(batch: pa.Table, positive_column: str) -> pa.Table:
    """The operator (a plain function: Ray runs it as tasks)."""
    require_columns(batch, ("text", "reject_reason", positive_column), "PairMarker")
    positive = batch.column(positive_column)
    reason = mark_blank(batch.column("reject_reason"), batch.column("text"), "null_query", "empty_query")
    reason = mark_blank(reason, positive, "null_positive", "empty_positive")
    batch = batch.drop_columns([positive_column]).append_column("positive", pc.cast(positive, pa.string()))
    batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
    return batch.append_column("action", pc.if_else(pc.is_null(reason), pa.scalar("new"),
                                                    pa.scalar(None, pa.string())))
