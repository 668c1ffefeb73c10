"""Judged queries ranked against a vector table at every Matryoshka size: `batch-embed eval` and the embed
job's gate share it, so a gate's metric is exactly the one `batch-embed eval` reports.

read queries -> mark (judged, non-empty) -> Embedder (the table's own model, instruction and adapter, one
engine pool) -> retrieve_top_k (tasks: exact top-k at every size in one scan of the table) -> [the caller's
further stages] -> rankings on the driver (`collect`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from operators.infer.embedder import Embedder, EmbedderSpec
from operators.prepare.query_marker import mark_queries
from operators.read.parquet_source import ParquetShardSource
from operators.retrieve.top_k import RetrievalSpec, retrieve_top_k

Ranking = list[tuple[str, float]]
RANKED_COLUMNS = ["id", "judged", "reject_reason", "query_tokens"]


def ranked_queries(fs: Any, shards: list, queries: Any, judged: frozenset[str], embedder: EmbedderSpec,
                   rows_per_batch: int, retrieval: RetrievalSpec, queries_per_scan: int, actor_args: dict[str, Any]):
    """The lazy Ray Dataset of queries with their top-k at every size of `retrieval` (`queries`: a
    QueriesConfig; `actor_args`: the engine pool's map_batches arguments)."""
    import ray.data

    ds = ray.data.read_datasource(ParquetShardSource(fs, shards, queries.id_column, queries.text_column, [],
                                                     retry=queries.retry.policy()))
    ds = ds.map_batches(mark_queries, fn_kwargs={"judged": judged}, batch_format="pyarrow", batch_size=None)
    ds = ds.map_batches(Embedder, fn_constructor_args=(embedder,), batch_size=rows_per_batch,
                        batch_format="pyarrow", **actor_args)
    return ds.map_batches(retrieve_top_k, fn_kwargs={"spec": retrieval}, batch_size=queries_per_scan,
                          batch_format="pyarrow")


def ranking_columns(dims: list[int]) -> list[str]:
    return RANKED_COLUMNS + [c for d in dims for c in (f"doc_id@{d}", f"score@{d}")]


def reranked_order(doc_ids: list[str], ranks: list[int | None] | None) -> list[tuple[str, float]]:
    """The reranked top (rank 1 first), then unscored candidates and those past the reranked depth in
    retrieval order: a ranking as deep as retrieval's, so recall@100 after reranking is comparable."""
    ranks = ranks or []
    scored = sorted((r, i) for i, r in enumerate(ranks) if r is not None)
    order = [i for _, i in scored] + [i for i in range(len(doc_ids)) if i >= len(ranks) or ranks[i] is None]
    return [(doc_ids[i], float(len(order) - n)) for n, i in enumerate(order)]


@dataclass
class Rankings:
    """What the pipeline's rows add up to on the driver: a ranking per judged query, per size."""

    by_dims: dict[int, dict[str, Ranking]]
    reranked: dict[str, Ranking] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)  # judged queries left unranked, by reason
    seen: set[str] = field(default_factory=set)  # judged query ids read
    read: int = 0
    unjudged: int = 0
    tokens: int = 0


def collect(ds: Any, dims: list[int], reranked: bool = False) -> Rankings:
    """Drive the pipeline and gather its rankings (one row per query, a judged query counted once);
    `reranked`: the rows also carry the reranker's `rank` of the first size's candidates."""
    out = Rankings(by_dims={d: {} for d in dims})
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            out.read += 1
            qid = row["id"]
            if qid is None or not row["judged"]:
                out.unjudged += 1
                continue
            if qid in out.seen:  # a judged query listed twice is ranked once
                out.rejected["duplicate_query_id"] += 1
                continue
            out.seen.add(qid)
            out.tokens += row["query_tokens"] or 0
            if row["reject_reason"]:
                out.rejected[row["reject_reason"].split(":", 1)[0]] += 1
                continue
            for d in dims:
                out.by_dims[d][qid] = list(zip(row[f"doc_id@{d}"], row[f"score@{d}"], strict=True))
            if reranked:
                out.tokens += row["n_tokens"] or 0
                out.reranked[qid] = reranked_order(row[f"doc_id@{dims[0]}"], row["rank"])
    return out
