"""Parquet shards of (query, document) pairs as a Ray Data source of one row per query.

A query's pairs must be consecutive rows of one shard (a run file sorted or
grouped by query, as retrieval steps write them); each shard is read by one task,
so a query never straddles tasks, and downstream batches split only between
queries. A query id met again later (in another shard, or after other queries)
is rejected as `duplicate_query` by the row validator, never merged silently.

Output columns (the parquet_source stream contract, plus the candidates):
- `id` (the query id as text), `text` (the query, from the group's first row),
  `source_shard`, `source_row` (the group's first row), `reject_reason` (type problems).
- `source_rows` (list of int64: every row of the group, for progress),
  `doc_id`, `doc_text` (lists of string), `retrieval_score` (list of float32; null
  without `pairs.score_column`), `pair_reject` (list of string: `null_doc_id`,
  `doc_text_not_string:<type>` ...; null for good pairs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from operators.read.parquet_source import ShardInfo, _as_text, named_errors
from operators.read.shard_reads import RetryPolicy, read_batches
from operators.write.progress import count_in, in_ranges

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("source_shard", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("reject_reason", pa.string()),
        pa.field("source_rows", pa.list_(pa.int64())),
        pa.field("doc_id", pa.list_(pa.string())),
        pa.field("doc_text", pa.list_(pa.string())),
        pa.field("retrieval_score", pa.list_(pa.float32())),
        pa.field("pair_reject", pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class PairColumns:
    query_id: str = "query_id"
    query: str = "query"
    doc_id: str = "doc_id"
    doc_text: str = "doc_text"
    score: str | None = None

    @property
    def names(self) -> list[str]:
        cols = [self.query_id, self.query, self.doc_id, self.doc_text] + ([self.score] if self.score else [])
        return list(dict.fromkeys(cols))


def normalize_pairs(table: pa.Table, cols: PairColumns) -> pa.Table:
    """Pair rows -> text columns plus per-row problems (same rules as the embedding source)."""
    qid, qid_reason = _as_text(table.column(cols.query_id), "query_id", integers=True)
    query, query_reason = _as_text(table.column(cols.query), "query")
    doc_id, doc_id_reason = _as_text(table.column(cols.doc_id), "doc_id", integers=True)
    doc_text, doc_text_reason = _as_text(table.column(cols.doc_text), "doc_text")
    pair_reject = pc.coalesce(doc_id_reason, doc_text_reason,
                              pc.if_else(pc.is_null(doc_id), pa.scalar("null_doc_id"), pa.scalar(None, pa.string())))
    if cols.score:
        try:
            score = pc.cast(table.column(cols.score), pa.float32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ValueError(f"pairs.score_column: {cols.score!r} is not numeric ({err})") from err
    else:
        score = pa.nulls(table.num_rows, pa.float32())
    return pa.table({
        "query_id": qid, "query": query, "query_reason": pc.coalesce(qid_reason, query_reason),
        "doc_id": doc_id, "doc_text": doc_text, "score": score, "pair_reject": pair_reject,
    })


def group_boundaries(query_ids: list[str | None]) -> list[int]:
    """Start index of each run of equal consecutive query ids (nulls each form their own run)."""
    starts = []
    prev: Any = object()
    for i, q in enumerate(query_ids):
        if q is None or q != prev:
            starts.append(i)
        prev = q
    return starts


def group_rows(pairs: pa.Table, rows: np.ndarray, shard: str) -> pa.Table:
    """Normalised pair rows (one open-ended run of the shard) -> one output row per query group."""
    qids = pairs.column("query_id").to_pylist()
    starts = group_boundaries(qids)
    ends = starts[1:] + [len(qids)]
    cols = {name: pairs.column(name).to_pylist() for name in ("query", "query_reason", "doc_id", "doc_text",
                                                                "score", "pair_reject")}
    out: dict[str, list] = {f.name: [] for f in SCHEMA}
    for s, e in zip(starts, ends, strict=True):
        out["id"].append(qids[s])
        out["text"].append(cols["query"][s])
        out["source_shard"].append(shard)
        out["source_row"].append(int(rows[s]))
        out["reject_reason"].append(cols["query_reason"][s])
        out["source_rows"].append([int(r) for r in rows[s:e]])
        out["doc_id"].append(cols["doc_id"][s:e])
        # A pair without a usable id or text is not scored: the reranker sees an empty document.
        out["doc_text"].append([t if r is None else None for t, r in zip(cols["doc_text"][s:e],
                                                                        cols["pair_reject"][s:e], strict=True)])
        out["retrieval_score"].append(cols["score"][s:e])
        out["pair_reject"].append(cols["pair_reject"][s:e])
    return pa.Table.from_pydict(out, schema=SCHEMA)


class PairsSource(Datasource):
    """One read task per shard; groups are cut where the query id changes."""

    def __init__(self, fs: Any, shards: list[ShardInfo], columns: PairColumns, rows_per_block: int = 4096,
                 done: dict[str, list[list[int]]] | None = None, retry: RetryPolicy | None = None):
        self._fs = fs
        self._retry = retry or RetryPolicy()  # source.retry, as the Parquet source
        self._shards = shards
        self._columns = columns
        self._rows_per_block = rows_per_block
        self._done = done or {}

    @property
    def schema(self) -> pa.Schema:
        return SCHEMA

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(s.num_rows for s in self._shards) * 1024

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        fs, cols, block_rows, done, retry = self._fs, self._columns, self._rows_per_block, self._done, self._retry
        tasks = []
        for shard in self._shards:
            skip = done.get(shard.path, [])
            remaining = shard.num_rows - count_in(skip, 0, shard.num_rows)
            if remaining == 0:
                continue

            def read(shard=shard, skip=skip) -> Iterator[pa.Table]:
                carry: pa.Table | None = None  # the last, maybe unfinished, group of the previous batch
                carry_rows = np.empty(0, dtype=np.int64)
                row = 0
                batches = read_batches(fs, shard.path, retry, columns=cols.names, batch_size=block_rows)
                for batch in named_errors(batches):
                    pairs = normalize_pairs(pa.Table.from_batches([batch]), cols)
                    rows = np.arange(row, row + pairs.num_rows, dtype=np.int64)
                    row += pairs.num_rows
                    if skip:  # rows a killed attempt of this run already committed
                        keep = ~in_ranges(rows, skip)
                        pairs, rows = pairs.filter(pa.array(keep)), rows[keep]
                    if carry is not None:
                        pairs, rows = pa.concat_tables([carry, pairs]), np.concatenate([carry_rows, rows])
                    if not pairs.num_rows:
                        continue
                    last = group_boundaries(pairs.column("query_id").to_pylist())[-1]
                    carry, carry_rows = pairs.slice(last), rows[last:]
                    if last:
                        yield group_rows(pairs.slice(0, last), rows[:last], shard.path)
                if carry is not None and carry.num_rows:
                    yield group_rows(carry, carry_rows, shard.path)

            meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=(shard.path,))
            tasks.append(ReadTask(read, meta, schema=SCHEMA))
        return tasks
