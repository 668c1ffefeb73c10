"""The evaluation's pipeline: rank every judged query at every Matryoshka size (and after reranking).

read queries -> mark (judged, non-empty) -> Embedder (the table's own model and instruction,
one engine pool) -> retrieve_top_k (tasks: exact top-k at every size in one scan of the
table) -> [Reranker on the first size's top rerank_top_k] -> rankings on the driver.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.core.engine_pool import engine_pool_args
from jobs.core.models import reranker_spec
from jobs.eval.plan import EvalPlan
from operators.infer.embedder import Embedder
from operators.infer.reranker import Reranker
from operators.prepare.query_marker import mark_queries
from operators.read.parquet_source import ParquetShardSource
from operators.retrieve.candidate_lists import cut_candidates
from operators.retrieve.top_k import retrieve_top_k

Ranking = list[tuple[str, float]]


def build_pipeline(plan: EvalPlan, gpus: float, ledger: Any = None):
    """The lazy Ray Dataset of ranked queries: id, judged, reject_reason, tokens, rankings per size; `ledger`: the
    run's TimeLedger (operators/infer/engine_clock.py), which the engines tell their timings."""
    import ray.data

    cfg, eng = plan.config, plan.config.engine
    q = cfg.queries
    actor_args = engine_pool_args(eng, gpus, pools=2 if plan.reranker else 1)
    ds = ray.data.read_datasource(ParquetShardSource(plan.fs, plan.shards, q.id_column, q.text_column, [],
                                                     retry=q.retry.policy()))
    ds = ds.map_batches(mark_queries, fn_kwargs={"judged": frozenset(plan.judged)}, batch_format="pyarrow",
                        batch_size=None)
    embedder = replace(plan.embedding.embedder_spec(gpus, eng), ledger=ledger)
    ds = ds.map_batches(Embedder, fn_constructor_args=(embedder,), batch_size=plan.query_rows_per_batch,
                        batch_format="pyarrow", **actor_args)
    ds = ds.map_batches(retrieve_top_k, fn_kwargs={"spec": plan.retrieval}, batch_size=cfg.eval.queries_per_scan,
                        batch_format="pyarrow")
    keep = ["id", "judged", "reject_reason", "query_tokens"]
    keep += [c for d in plan.dims for c in (f"doc_id@{d}", f"score@{d}")]
    if plan.reranker is not None:
        assert cfg.reranker is not None
        model, max_tokens = plan.reranker
        spec = replace(reranker_spec(cfg.reranker, model, max_tokens, eng, gpus), ledger=ledger)
        ds = ds.map_batches(cut_candidates, fn_kwargs={"k": cfg.eval.rerank_top_k}, batch_format="pyarrow",
                            batch_size=None)
        ds = ds.map_batches(Reranker, fn_constructor_args=(spec,), batch_size=plan.rerank_queries_per_batch,
                            batch_format="pyarrow", **actor_args)
        keep += ["rerank_score", "rank", "n_tokens"]
    return ds.select_columns(keep)


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


def collect(plan: EvalPlan, ds) -> Rankings:
    """Drive the pipeline and gather its rankings (one row per query, a judged query counted once)."""
    out = Rankings(by_dims={d: {} for d in plan.dims})
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
            for d in plan.dims:
                out.by_dims[d][qid] = list(zip(row[f"doc_id@{d}"], row[f"score@{d}"], strict=True))
            if plan.reranker is not None:
                out.tokens += row["n_tokens"] or 0
                out.reranked[qid] = reranked_order(row[f"doc_id@{plan.dims[0]}"], row["rank"])
    return out
