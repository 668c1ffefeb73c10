"""The mining pipeline: candidates for each (query, positive) pair, rescored, filtered into hard negatives.

read pairs -> mark bad rows -> Embedder (query with the table's instruction + positive as a
document, one engine) -> retrieve_top_k (exact top range_max) -> [Reranker rescoring
positive and candidates] -> NegativeMiner -> rows for the JSONL the driver writes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.core.engine_pool import engine_pool_args
from jobs.mine.config import MineJobConfig, Scorer
from jobs.mine.plan import MinePlan
from operators.infer.embedder import Embedder
from operators.infer.reranker import Reranker
from operators.prepare.pair_marker import mark_pairs
from operators.read.parquet_source import ParquetShardSource
from operators.retrieve.candidate_lists import candidates_back, positive_first
from operators.retrieve.negative_miner import MiningRules, NegativeMiner
from operators.retrieve.top_k import retrieve_top_k


def build_pipeline(cfg: MineJobConfig, plan: MinePlan, gpus: float, ledger: Any = None):
    """The lazy Ray Dataset of mined rows (or a skip reason), one per (query, positive) pair; `ledger`: the run's
    TimeLedger (operators/infer/engine_clock.py), which the engines tell their timings."""
    import ray.data

    p, c, eng, rules = cfg.pairs, cfg.candidates, cfg.engine, cfg.mining
    fs, shards, emb, retrieval = plan.fs, plan.shards, plan.embedding, plan.retrieval
    actor_args = engine_pool_args(eng, gpus, pools=2 if rules.scorer is Scorer.reranker else 1)
    ds = ray.data.read_datasource(ParquetShardSource(fs, shards, p.query_column, p.query_column, [p.positive_column],
                                                     retry=p.retry.policy()))
    ds = ds.map_batches(mark_pairs, fn_kwargs={"positive_column": p.positive_column}, batch_format="pyarrow",
                        batch_size=None)
    embedder = replace(emb.embedder_spec(gpus, eng, document_column="positive"), ledger=ledger)
    ds = ds.map_batches(Embedder, fn_constructor_args=(embedder,),
                        batch_size=plan.rows_per_batch,
                        batch_format="pyarrow", **actor_args)
    ds = ds.map_batches(retrieve_top_k, fn_kwargs={"spec": retrieval}, batch_size=c.queries_per_scan,
                        batch_format="pyarrow")
    if rules.scorer is Scorer.reranker:
        assert cfg.reranker is not None and plan.reranker is not None
        spec = replace(plan.reranker.spec(cfg.reranker, eng, gpus), ledger=ledger)
        ds = ds.map_batches(positive_first, batch_format="pyarrow", batch_size=None)
        ds = ds.map_batches(Reranker, fn_constructor_args=(spec,), batch_size=plan.reranker_rows_per_batch,
                            batch_format="pyarrow", **actor_args)
        ds = ds.map_batches(candidates_back, batch_format="pyarrow", batch_size=None)
    miner = NegativeMiner(MiningRules(rules.range_min, rules.range_max, rules.max_score, rules.absolute_margin,
                                      rules.relative_margin, rules.num_negatives, rules.sampling.value, rules.seed),
                          {s.path: i for i, s in enumerate(shards)})
    ds = ds.map_batches(miner, batch_format="pyarrow", batch_size=None)
    columns = ["text", "positive", "negatives", "negative_scores", "positive_score", "mine_reason", "reject_reason",
               "source_shard", "source_row"]
    return ds.select_columns(columns)
