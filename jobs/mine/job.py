"""`batch-embed mine`: hard negatives for (query, positive) pairs from a vector table, as ms-swift JSONL.

read pairs -> mark bad rows -> Embedder (query with the table's instruction + positive as a
document, one engine) -> retrieve_top_k (exact top range_max) -> [Reranker rescoring
positive and candidates] -> NegativeMiner -> JSONL on the driver, written to a temporary
name and moved into place at the end (a killed run leaves no half file).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from jobs.core.command import add_arguments, init_ray, run_command
from jobs.core.engine_pool import resolve_gpus
from jobs.mine.config import MineJobConfig
from jobs.mine.pipeline import build_pipeline
from jobs.mine.plan import plan_mine_job
from jobs.mine.summary import MineSummary
from operators.infer.engine_clock import RunClock
from operators.storage import fsspec_options

CONFIG = MineJobConfig
__all__ = ["CONFIG", "add_arguments", "run", "run_from_args"]


def run(cfg: MineJobConfig) -> MineSummary:
    """Plan, start Ray, mine; the JSONL is written to a temporary name and moved into place at the end."""
    import fsspec
    from ray.data import DataContext

    t0 = time.monotonic()
    plan = plan_mine_job(cfg)
    total = sum(s.num_rows for s in plan.shards)
    init_ray(cfg.run.ray_address)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    clock = RunClock()
    ds = build_pipeline(cfg, plan, resolve_gpus(cfg.engine.gpus_per_actor), clock.ledger)
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
        time_split=clock.split(),
    )


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, MineJobConfig, run)
