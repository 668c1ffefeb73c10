"""Marks rows that cannot be embedded, so they go to the rejected table instead of killing the run.

Column contract:
- needs `id`, `text`, `source_shard`, `source_row`, `reject_reason` (see `parquet_source`).
- updates `reject_reason`: `null_id`, `null_text`, `empty_text` (empty or whitespace only),
  `duplicate_id` (the id was already claimed by an earlier row of this run), `id_exists`
  (append: the table already holds the id); earlier reasons (type problems found while
  reading) are kept.
- adds `text_hash` (hash of the source text), `fingerprint` (what the vector depends on),
  `action` (`new`, `changed`: embed; `columns`: same vector, copied columns changed, so the
  stored vector is rewritten with the new columns; `unchanged`: the table already holds this
  row; null on rejected rows), `old_fragment` (the fragment holding a replaced row) and
  `old_row` (a `columns` row's address in the table, where its vector is read back).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.prepare.fingerprints import Provenance, hash_rows, hash_strings, text_hash
from operators.prepare.table_index import classify

REQUIRED = ("id", "text", "source_shard", "source_row", "reject_reason")

_ROW_BITS = 40  # owner position = shard index << 40 | row: 16M shards of up to 1T rows


def first_reason(reason: Any, cond: Any, label: str) -> Any:
    """`label` where `cond` holds and the row has no reason yet: a row keeps the first reason found."""
    return pc.if_else(pc.and_(pc.is_null(reason), pc.fill_null(cond, False)), pa.scalar(label), reason)


def mark_blank(reason: Any, column: Any, null_label: str, empty_label: str) -> Any:
    """`null_label` where `column` is null, `empty_label` where it is empty or whitespace only (first reason wins)."""
    reason = first_reason(reason, pc.is_null(column), null_label)
    return first_reason(reason, pc.equal(pc.utf8_trim_whitespace(column), ""), empty_label)


# What the validator does with a row whose id the table already holds (`existing=`).
DIFF = "diff"  # sync: compare fingerprints and copied columns -> changed / columns / unchanged
SKIP = "skip"  # the reranking job: a finished query is `unchanged`
REJECT = "reject"  # append: the id is rejected as `id_exists`, never added twice


class RowValidator:
    """Cheap and stateless apart from actor handles; runs as plain Ray tasks.

    `registry`: the run's RegistryClient (operators/prepare/id_registry.py); `index` (an IndexClient)
    is given when the run writes into an existing table (sync, append, rerank); without it every valid
    row is `new`. `existing`: DIFF, SKIP or REJECT. `columns`: the copied source columns DIFF compares
    (the index hashes the same).
    """

    def __init__(self, registry: Any, shard_index: dict[str, int], provenance: Provenance, index: Any = None,
                 existing: str = DIFF, columns: tuple[str, ...] = ()):
        self._registry = registry
        self._shard_index = shard_index
        self._provenance = provenance
        self._index = index
        self._existing = existing
        self._columns = tuple(columns)

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "RowValidator")
        reason = batch.column("reject_reason").combine_chunks()
        ids = batch.column("id")
        text = batch.column("text")
        reason = first_reason(reason, pc.is_null(ids), "null_id")
        reason = mark_blank(reason, text, "null_text", "empty_text")

        candidates = np.flatnonzero(pc.is_null(reason).to_numpy(zero_copy_only=False))
        hashes = np.empty(0, dtype=np.uint64)
        if len(candidates):
            taken = pa.array(candidates)
            shards = batch.column("source_shard").take(taken).combine_chunks().dictionary_encode()
            shard_ids = np.array([self._shard_index[s] for s in shards.dictionary.to_pylist()], dtype=np.uint64)
            rows = batch.column("source_row").take(taken).to_numpy()
            hashes = hash_strings(ids.take(taken))
            owners = (shard_ids[shards.indices.to_numpy()] << np.uint64(_ROW_BITS)) | rows.astype(np.uint64)
            owned = self._registry.claim(hashes, owners)
            dup = np.zeros(batch.num_rows, dtype=bool)
            dup[candidates[~owned]] = True
            reason = pc.if_else(pa.array(dup), pa.scalar("duplicate_id"), reason)
            candidates, hashes = candidates[owned], hashes[owned]

        lookup = None
        if self._index is not None and len(candidates):
            lookup = self._index.lookup(hashes)
            if self._existing == REJECT:
                found = lookup[0]
                exists = np.zeros(batch.num_rows, dtype=bool)
                exists[candidates[found]] = True
                reason = first_reason(reason, pa.array(exists), "id_exists")
                candidates, hashes, lookup = candidates[~found], hashes[~found], None
        batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
        return self._add_sync_columns(batch, candidates, hashes, lookup)

    def _add_sync_columns(self, batch: pa.Table, rows: np.ndarray, id_hashes: np.ndarray,
                          lookup: tuple[np.ndarray, ...] | None) -> pa.Table:
        n = batch.num_rows
        digests = [text_hash(t) for t in batch.column("text").take(rows).to_pylist()]
        prints = [self._provenance.fingerprint(d) for d in digests]
        actions = ["new"] * len(rows)
        old_addr = np.zeros(len(rows), dtype=np.uint64)
        if lookup is not None:
            found, old_prints, old_cols, old_addr = lookup
            if self._existing == SKIP:
                actions = ["unchanged" if f else "new" for f in found.tolist()]
            else:
                new_prints = hash_strings(pa.array(prints, pa.string()))
                new_cols = (hash_rows(batch.select(list(self._columns)).take(pa.array(rows)), self._columns)
                            if self._columns else np.zeros(len(rows), np.uint64))  # select([]) has no rows
                actions = classify(found, old_prints, new_prints, old_cols, new_cols)
        acts = np.array(actions, dtype=object)
        replaced = (acts == "changed") | (acts == "columns")

        def spread(values: list[Any] | np.ndarray, typ: pa.DataType) -> pa.Array:
            full: list[Any] = [None] * n
            for r, v in zip(rows.tolist(), list(values), strict=True):
                full[r] = v
            return pa.array(full, typ)

        frags = [int(a) >> 32 if r else None for a, r in zip(old_addr.tolist(), replaced.tolist(), strict=True)]
        addrs = [int(a) if act == "columns" else None for a, act in zip(old_addr.tolist(), actions, strict=True)]
        return (
            batch.append_column("text_hash", spread(digests, pa.string()))
            .append_column("fingerprint", spread(prints, pa.string()))
            .append_column("action", spread(actions, pa.string()))
            .append_column("old_fragment", spread(frags, pa.int64()))
            .append_column("old_row", spread(addrs, pa.uint64()))
        )
