"""The evaluation's pipeline: rank every judged query at every Matryoshka size (and after reranking).

jobs/core/ranking.py (read queries -> mark -> Embedder -> retrieve_top_k) -> [Reranker on the first
size's top rerank_top_k] -> rankings on the driver.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.core.engine_pool import engine_pool_args
from jobs.core.ranking import Rankings, ranked_queries, ranking_columns
from jobs.core.ranking import collect as collect_rankings
from jobs.eval.plan import EvalPlan
from operators.infer.reranker import Reranker
from operators.retrieve.candidate_lists import cut_candidates


def build_pipeline(plan: EvalPlan, gpus: float, ledger: Any = None):
    """The lazy Ray Dataset of ranked queries: id, judged, reject_reason, tokens, rankings per size; `ledger`: the
    run's TimeLedger (operators/infer/engine_clock.py), which the engines tell their timings."""
    cfg, eng = plan.config, plan.config.engine
    actor_args = engine_pool_args(eng, gpus, pools=2 if plan.reranker else 1)
    embedder = replace(plan.embedding.embedder_spec(gpus, eng), ledger=ledger)
    ds = ranked_queries(plan.fs, plan.shards, cfg.queries, frozenset(plan.judged), embedder,
                        plan.query_rows_per_batch, plan.retrieval, cfg.eval.queries_per_scan, actor_args)
    keep = ranking_columns(plan.dims)
    if plan.reranker is not None:
        assert cfg.reranker is not None
        spec = replace(plan.reranker.spec(cfg.reranker, eng, gpus), ledger=ledger)
        ds = ds.map_batches(cut_candidates, fn_kwargs={"k": cfg.eval.rerank_top_k}, batch_format="pyarrow",
                            batch_size=None)
        ds = ds.map_batches(Reranker, fn_constructor_args=(spec,), batch_size=plan.rerank_queries_per_batch,
                            batch_format="pyarrow", **actor_args)
        keep += ["rerank_score", "rank", "n_tokens"]
    return ds.select_columns(keep)


def collect(plan: EvalPlan, ds) -> Rankings:
    """Drive the pipeline and gather its rankings (one row per query, a judged query counted once)."""
    return collect_rankings(ds, plan.dims, reranked=plan.reranker is not None)
