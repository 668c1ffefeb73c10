"""`batch-embed mine`: hard negatives for (query, positive) pairs from a vector table, as ms-swift JSONL.

read pairs -> mark bad rows -> Embedder (query with the table's instruction + positive as a
document, one engine) -> retrieve_candidates (exact top range_max) -> [Reranker rescoring
positive and candidates] -> NegativeMiner -> JSONL on the driver, written to a temporary
name and moved into place at the end (a killed run leaves no half file).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.embed import add_arguments, init_ray, run_command
from jobs.mine_config import MineJobConfig, Scorer
from jobs.plan import input_shards, rows_per_batch
from jobs.rerank_plan import open_candidates, reranker_model, reranker_spec
from operators.negative_miner import MiningRules
from operators.row_validator import mark_blank

log = logging.getLogger("batch_embed")


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


@dataclass
class MineSummary:
    pairs_read: int
    pairs_written: int
    negatives: int
    short_of_negatives: int  # written with fewer than num_negatives
    skipped: dict[str, int]  # bad rows and rows without any negative, by reason
    first_skipped: list[str]  # where, for the first few
    mean_positive_score: float
    mean_negative_score: float
    scorer: str
    output: str
    seconds: float

    def render(self) -> str:
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return "\n".join([
            "── batch-embed mine summary ─────────────────────────",
            f"pairs          read {self.pairs_read:,}  written {self.pairs_written:,}  "
            f"with fewer negatives than asked {self.short_of_negatives:,}",
            f"negatives      {self.negatives:,}",
            f"skipped        {skipped}" + (f"  (first: {'; '.join(self.first_skipped)})" if self.first_skipped else ""),
            f"similarity     query-positive {self.mean_positive_score:.4f}  query-negative "
            f"{self.mean_negative_score:.4f}  ({self.scorer})",
            f"output         {self.output}",
            f"time           {self.seconds:.1f} s",
        ])


@dataclass
class MinePlan:
    """The driver's checks, done before Ray starts: input columns, candidates table, reranker."""

    fs: Any
    shards: list
    embedding: Any  # rerank_plan.QueryEmbedding
    retrieval: Any  # candidate_retriever.RetrievalSpec
    reranker: tuple[Any, int] | None  # (ModelSpec, max_tokens)


def plan_mine_job(cfg: MineJobConfig) -> MinePlan:
    p, c, rules = cfg.pairs, cfg.candidates, cfg.mining
    fs, shards = input_shards(p.uri, p.storage_options, [("pairs.query_column", p.query_column),
                                                         ("pairs.positive_column", p.positive_column)], "pairs.uri")
    # One more candidate than considered: the positive itself is often in the table, and is dropped.
    emb, retrieval, _ = open_candidates(c.table, c.uri, c.text_column, c.query_instruction, c.storage_options,
                                        rules.range_max + 1, cfg.dtype.value)
    ranker = reranker_model(cfg.reranker, "reranker") if rules.scorer is Scorer.reranker and cfg.reranker else None
    return MinePlan(fs=fs, shards=shards, embedding=emb, retrieval=retrieval, reranker=ranker)


def build_pipeline(cfg: MineJobConfig, plan: MinePlan, gpus: float):
    import ray.data

    from jobs.pipeline import engine_pool_args
    from operators.candidate_retriever import retrieve_candidates
    from operators.embedder import Embedder
    from operators.negative_miner import NegativeMiner
    from operators.parquet_source import ParquetShardSource
    from operators.reranker import Reranker

    p, c, eng, rules = cfg.pairs, cfg.candidates, cfg.engine, cfg.mining
    fs, shards, emb, retrieval = plan.fs, plan.shards, plan.embedding, plan.retrieval
    actor_args = engine_pool_args(eng, gpus, pools=2 if rules.scorer is Scorer.reranker else 1)
    ds = ray.data.read_datasource(ParquetShardSource(fs, shards, p.query_column, p.query_column, [p.positive_column]))
    ds = ds.map_batches(mark_pairs, fn_kwargs={"positive_column": p.positive_column}, batch_format="pyarrow",
                        batch_size=None)
    ds = ds.map_batches(Embedder, fn_constructor_args=(emb.embedder_spec(gpus, eng, document_column="positive"),),
                        batch_size=rows_per_batch(fs, shards[0], p.query_column, eng.batch_tokens) // 2 or 1,
                        batch_format="pyarrow", **actor_args)
    ds = ds.map_batches(retrieve_candidates, fn_kwargs={"spec": retrieval}, batch_size=c.queries_per_scan,
                        batch_format="pyarrow")
    if rules.scorer is Scorer.reranker:
        assert cfg.reranker is not None and plan.reranker is not None
        model, max_tokens = plan.reranker
        spec = reranker_spec(cfg.reranker, model, max_tokens, eng, gpus)
        per_batch = max(1, eng.batch_tokens // ((rules.range_max + 2) * 128))
        ds = ds.map_batches(positive_first, batch_format="pyarrow", batch_size=None)
        ds = ds.map_batches(Reranker, fn_constructor_args=(spec,), batch_size=per_batch, batch_format="pyarrow",
                            **actor_args)
        ds = ds.map_batches(candidates_back, batch_format="pyarrow", batch_size=None)
    miner = NegativeMiner(MiningRules(rules.range_min, rules.range_max, rules.max_score, rules.absolute_margin,
                                      rules.relative_margin, rules.num_negatives, rules.sampling.value, rules.seed),
                          {s.path: i for i, s in enumerate(shards)})
    ds = ds.map_batches(miner, batch_format="pyarrow", batch_size=None)
    columns = ["text", "positive", "negatives", "negative_scores", "positive_score", "mine_reason", "reject_reason",
               "source_shard", "source_row"]
    return ds.select_columns(columns)


def run(cfg: MineJobConfig) -> MineSummary:
    import fsspec
    from ray.data import DataContext

    from jobs.pipeline import resolve_gpus
    from operators.storage import fsspec_options

    t0 = time.monotonic()
    plan = plan_mine_job(cfg)
    total = sum(s.num_rows for s in plan.shards)
    init_ray(cfg.run.ray_address)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    ds = build_pipeline(cfg, plan, resolve_gpus(cfg.engine.gpus_per_actor))
    options = fsspec_options(cfg.output.path, cfg.output.storage_options)
    fs, path = fsspec.core.url_to_fs(cfg.output.path, **options)
    tmp = f"{path}.incomplete"
    fs.makedirs(fs._parent(path), exist_ok=True)
    skipped: Counter[str] = Counter()
    first_skipped: list[str] = []
    written = negatives = short = 0
    pos_sum = neg_sum = 0.0
    with fs.open(tmp, "w") as out:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                reason = row["reject_reason"] or row["mine_reason"]
                if reason:
                    skipped[reason.split(":", 1)[0]] += 1
                    if len(first_skipped) < 5:
                        first_skipped.append(f"{row['source_shard']} row {row['source_row']}: {reason}")
                    continue
                out.write(json.dumps({"query": row["text"], "response": row["positive"],
                                      "rejected_response": row["negatives"]}, ensure_ascii=False) + "\n")
                written += 1
                negatives += len(row["negatives"])
                short += len(row["negatives"]) < cfg.mining.num_negatives
                pos_sum += row["positive_score"]
                neg_sum += sum(row["negative_scores"])
    fs.mv(tmp, path)
    return MineSummary(
        pairs_read=total, pairs_written=written, negatives=negatives, short_of_negatives=short,
        skipped=dict(skipped), first_skipped=first_skipped,
        mean_positive_score=pos_sum / written if written else float("nan"),
        mean_negative_score=neg_sum / negatives if negatives else float("nan"),
        scorer=cfg.mining.scorer.value, output=cfg.output.path, seconds=time.monotonic() - t0,
    )


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, MineJobConfig, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed mine", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

