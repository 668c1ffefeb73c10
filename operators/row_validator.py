"""Marks rows that cannot be embedded, so they go to the rejected table instead of killing the run.

Column contract:
- needs `id`, `text`, `source_shard`, `source_row`, `reject_reason` (see `parquet_source`).
- updates `reject_reason`: `null_id`, `null_text`, `empty_text` (empty or whitespace only),
  `duplicate_id` (the id was already claimed by an earlier row of this run); earlier
  reasons (type problems found while reading) are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.vectors import id_hash64

REQUIRED = ("id", "text", "source_shard", "source_row", "reject_reason")

_ROW_BITS = 40  # owner position = shard index << 40 | row: 16M shards of up to 1T rows


class RowValidator:
    """Cheap and stateless apart from the registry handle; runs as plain Ray tasks."""

    def __init__(self, registry: Any, shard_index: dict[str, int]):
        self._registry = registry
        self._shard_index = shard_index

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "RowValidator")
        reason = batch.column("reject_reason").combine_chunks()
        ids = batch.column("id")
        text = batch.column("text")
        blank = pc.equal(pc.utf8_trim_whitespace(text), "")
        for cond, label in (
            (pc.is_null(ids), "null_id"),
            (pc.and_(pc.is_null(text), pc.is_null(reason)), "null_text"),
            (pc.fill_null(blank, False), "empty_text"),
        ):
            reason = pc.if_else(pc.and_(pc.is_null(reason), cond), pa.scalar(label), reason)

        candidates = np.flatnonzero(pc.is_null(reason).to_numpy(zero_copy_only=False))
        if len(candidates):
            cand_ids = ids.take(candidates).to_pylist()
            shards = batch.column("source_shard").take(candidates).to_pylist()
            rows = batch.column("source_row").take(candidates).to_numpy()
            hashes = np.fromiter((id_hash64(i) for i in cand_ids), dtype=np.uint64, count=len(cand_ids))
            owners = (np.array([self._shard_index[s] for s in shards], dtype=np.uint64) << _ROW_BITS) | rows.astype(
                np.uint64
            )
            import ray

            owned = ray.get(self._registry.claim.remote(hashes, owners))
            dup = np.zeros(batch.num_rows, dtype=bool)
            dup[candidates[~owned]] = True
            reason = pc.if_else(pa.array(dup), pa.scalar("duplicate_id"), reason)

        return batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
