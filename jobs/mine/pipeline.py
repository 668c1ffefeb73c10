"""The mining pipeline: candidates for each (query, positive) pair, rescored, filtered into hard negatives.

read pairs -> mark bad rows -> Embedder (query with the table's instruction + positive as a
document, one engine) -> retrieve_top_k (exact top range_max) -> [Reranker rescoring
positive and candidates] -> NegativeMiner -> rows for the JSONL the driver writes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from jobs.core.engine_pool import engine_pool_args
from jobs.core.models import reranker_spec
from jobs.mine.config import MineJobConfig, Scorer
from jobs.mine.plan import MinePlan
from operators.infer.embedder import Embedder
from operators.infer.reranker import Reranker
from operators.prepare.row_validator import mark_blank
from operators.read.parquet_source import ParquetShardSource
from operators.retrieve.negative_miner import MiningRules, NegativeMiner
from operators.retrieve.top_k import retrieve_top_k


def mark_pairs(batch: pa.Table, positive_column: str) -> pa.Table:
    """Stream rows -> `positive` column, bad rows' reasons, and `action` (`new` for rows to mine)."""
    positive = batch.column(positive_column)
    reason = mark_blank(batch.column("reject_reason"), batch.column("text"), "null_query", "empty_query")
    reason = mark_blank(reason, positive, "null_positive", "empty_positive")
    batch = batch.drop_columns([positive_column]).append_column("positive", pc.cast(positive, pa.string()))
    batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
    return batch.append_column("action", pc.if_else(pc.is_null(reason), pa.scalar("new"),
                                                    pa.scalar(None, pa.string())))


def positive_first(batch: pa.Table) -> pa.Table:
    """For reranker scoring: the positive becomes the first pair of each row, candidates follow."""
    docs = [None if c is None else [p, *c] for p, c in zip(batch.column("positive").to_pylist(),
                                                            batch.column("doc_text").to_pylist(), strict=True)]
    return (batch.rename_columns(["candidate_text" if c == "doc_text" else c for c in batch.column_names])
            .append_column("doc_text", pa.array(docs, pa.list_(pa.string()))))


def candidates_back(batch: pa.Table) -> pa.Table:
    keep = [c for c in batch.column_names if c not in ("doc_text", "rank", "pair_tokens", "pair_reason",
                                                       "truncated", "n_tokens")]
    batch = batch.select(keep)
    return batch.rename_columns(["doc_text" if c == "candidate_text" else c for c in batch.column_names])


def build_pipeline(cfg: MineJobConfig, plan: MinePlan, gpus: float):
    """The lazy Ray Dataset of mined rows (or a skip reason), one per (query, positive) pair."""
    import ray.data

    p, c, eng, rules = cfg.pairs, cfg.candidates, cfg.engine, cfg.mining
    fs, shards, emb, retrieval = plan.fs, plan.shards, plan.embedding, plan.retrieval
    actor_args = engine_pool_args(eng, gpus, pools=2 if rules.scorer is Scorer.reranker else 1)
    ds = ray.data.read_datasource(ParquetShardSource(fs, shards, p.query_column, p.query_column, [p.positive_column]))
    ds = ds.map_batches(mark_pairs, fn_kwargs={"positive_column": p.positive_column}, batch_format="pyarrow",
                        batch_size=None)
    ds = ds.map_batches(Embedder, fn_constructor_args=(emb.embedder_spec(gpus, eng, document_column="positive"),),
                        batch_size=plan.rows_per_batch,
                        batch_format="pyarrow", **actor_args)
    ds = ds.map_batches(retrieve_top_k, fn_kwargs={"spec": retrieval}, batch_size=c.queries_per_scan,
                        batch_format="pyarrow")
    if rules.scorer is Scorer.reranker:
        assert cfg.reranker is not None and plan.reranker is not None
        model, max_tokens = plan.reranker
        spec = reranker_spec(cfg.reranker, model, max_tokens, eng, gpus)
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
