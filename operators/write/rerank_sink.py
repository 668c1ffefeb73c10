"""Writes reranked queries as Lance fragments: one table row per (query, candidate) pair.

`RerankFragmentWriter` column contract:
- needs `id` (query id), `action`, `reject_reason`, `source_shard`, `source_row`, `doc_id`,
  `retrieval_score`, `rerank_score`, `rank`, `pair_tokens`, `truncated`, `pair_reason`, `n_tokens`;
  uses `source_rows` (pairs input: every source row of the query), `pair_reject` and
  `query_tokens` when present.
- returns the report rows of `lance_sink.LanceFragmentWriter` (same committer): `main` for
  scored queries (all their pairs, scored or not, in one fragment set, so a query is
  committed whole or not at all), `rejected` for queries that could not be reranked at
  all (one rejected row per source row), `unchanged` for queries the table already holds.

A query lands entirely in one of the two tables, and its progress goes with it:
a kill between the two tables' commits can neither lose nor repeat a query.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.write.lance_sink import (
    METADATA_KEY,
    REJECTED_SCHEMA,
    WRITER_OUTPUT_SCHEMA,
    SinkSpec,
    fragment_writer,
    writer_report,
)
from operators.write.progress import Progress, progress_of

# The row validator's generic labels, as a reranking user reads them.
QUERY_REASONS = {
    "null_id": "null_query_id",
    "null_text": "null_query",
    "empty_text": "empty_query",
    "duplicate_id": "duplicate_query",
}


def rerank_schema(provenance: dict[str, Any]) -> pa.Schema:
    """The output table; `provenance` (reranker, instruction, candidates...) goes in its metadata."""
    return pa.schema(
        [
            pa.field("query_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string()),
            pa.field("retrieval_score", pa.float32()),
            pa.field("rerank_score", pa.float32()),
            pa.field("rank", pa.int32()),
            pa.field("n_tokens", pa.int32()),
            pa.field("truncated", pa.bool_()),
            pa.field("reason", pa.string()),
        ],
        metadata={METADATA_KEY: json.dumps(provenance, sort_keys=True).encode()},
    )


def _explode(lists: list[list | None]) -> list:
    return [v for lst in lists for v in (lst or [])]


class RerankFragmentWriter:
    REQUIRED = ("id", "action", "reject_reason", "source_shard", "source_row", "doc_id", "retrieval_score",
                "rerank_score", "rank", "pair_tokens", "truncated", "pair_reason", "n_tokens")

    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def __call__(self, batch: pa.Table) -> pa.Table:
        write_fragments = fragment_writer()
        require_columns(batch, self.REQUIRED, "RerankFragmentWriter")
        opts = self.spec.storage_options or None
        batch = self._with_source_rows(batch)
        no_candidates = pc.equal(pc.fill_null(pc.list_value_length(batch.column("doc_id")), 0), 0)
        scored = pc.fill_null(pc.is_in(batch.column("action"), pa.array(["new", "changed"])), False)
        reason = pc.if_else(pc.and_(scored, no_candidates), pa.scalar("no_candidates"),
                            batch.column("reject_reason"))
        batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
        good = batch.filter(pc.and_(scored, pc.is_null(reason)))
        bad = batch.filter(pc.is_valid(reason))
        same = batch.filter(pc.fill_null(pc.equal(batch.column("action"), "unchanged"), False))
        reports = []
        if good.num_rows:
            pairs = self._pairs(good)
            frags = write_fragments(pairs, self.spec.main_uri, schema=self.spec.schema,
                                    max_rows_per_file=self.spec.max_rows_per_file, storage_options=opts,
                                    mode="overwrite" if self.spec.replaces else "append")  # lance_sink.SinkSpec
            tokens = int(pc.sum(good.column("n_tokens")).as_py() or 0)
            if "query_tokens" in good.column_names:
                tokens += int(pc.sum(good.column("query_tokens")).as_py() or 0)
            unscored = pairs.num_rows - pc.count(pairs.column("rerank_score")).as_py()
            counts = Counter(queries=good.num_rows, pairs=pairs.num_rows, unscored_pairs=unscored)
            reports.append(writer_report("main", pairs.num_rows, frags, tokens, counts, _covered(good)))
        if bad.num_rows:
            rejected = self._rejected(bad)
            frags = write_fragments(rejected, self.spec.rejected_uri, schema=REJECTED_SCHEMA,
                                    max_rows_per_file=self.spec.max_rows_per_file, storage_options=opts)
            reasons = Counter(r.split(":", 1)[0] for r in rejected.column("reason").to_pylist())
            reports.append(writer_report("rejected", rejected.num_rows, frags, 0, reasons, _covered(bad)))
        if same.num_rows:
            n = sum(len(r) for r in same.column("source_rows").to_pylist())
            # Not progress: a resumed run re-checks them.
            reports.append(writer_report("unchanged", n, [], 0, Counter(skipped_queries=same.num_rows), {}))
        return pa.Table.from_pylist(reports, schema=WRITER_OUTPUT_SCHEMA)

    @staticmethod
    def _with_source_rows(batch: pa.Table) -> pa.Table:
        if "source_rows" in batch.column_names:
            return batch
        rows = [[r] for r in batch.column("source_row").to_pylist()]  # one source row per query
        return batch.append_column("source_rows", pa.array(rows, pa.list_(pa.int64())))

    def _pairs(self, good: pa.Table) -> pa.Table:
        lengths = [len(d) for d in good.column("doc_id").to_pylist()]
        pair_reason = _explode(good.column("pair_reason").to_pylist())
        if "pair_reject" in good.column_names:  # problems found while reading come first
            pair_reason = [a or b for a, b in zip(_explode(good.column("pair_reject").to_pylist()), pair_reason,
                                                  strict=True)]
        retrieval = _explode(good.column("retrieval_score").to_pylist())
        if not retrieval:
            retrieval = [None] * sum(lengths)
        cols = {
            "query_id": [q for q, n in zip(good.column("id").to_pylist(), lengths, strict=True) for _ in range(n)],
            "doc_id": _explode(good.column("doc_id").to_pylist()),
            "retrieval_score": retrieval,
            "rerank_score": _explode(good.column("rerank_score").to_pylist()),
            "rank": _explode(good.column("rank").to_pylist()),
            "n_tokens": _explode(good.column("pair_tokens").to_pylist()),
            "truncated": _explode(good.column("truncated").to_pylist()),
            "reason": pair_reason,
        }
        return pa.Table.from_pydict(cols, schema=self.spec.schema)

    @staticmethod
    def _rejected(bad: pa.Table) -> pa.Table:
        ids, reasons, shards, rows = [], [], [], []
        columns = [bad.column(c).to_pylist() for c in ("id", "reject_reason", "source_shard", "source_rows")]
        for qid, reason, shard, source_rows in zip(*columns, strict=True):
            label, sep, detail = reason.partition(":")
            reason = QUERY_REASONS.get(label, label) + sep + detail
            for r in source_rows:
                ids.append(qid)
                reasons.append(reason)
                shards.append(shard)
                rows.append(r)
        return pa.table({"id": ids, "reason": reasons, "source_shard": shards, "source_row": rows},
                        schema=REJECTED_SCHEMA)


def _covered(queries: pa.Table) -> Progress:
    """The source rows of these queries (a pairs query spans several)."""
    source_rows = queries.column("source_rows").to_pylist()
    shards = [s for s, rs in zip(queries.column("source_shard").to_pylist(), source_rows, strict=True) for _ in rs]
    return progress_of(shards, _explode(source_rows))
