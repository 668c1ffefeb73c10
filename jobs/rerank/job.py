"""`batch-embed rerank` / `python -m jobs.rerank`: score (query, document) pairs with Qwen3-Reranker into LanceDB."""

from __future__ import annotations

import argparse
import logging

from jobs.core.command import add_arguments, init_ray, run_command
from jobs.core.committed_run import table_lock
from jobs.rerank.config import RerankJobConfig
from jobs.rerank.pipeline import run_pipeline
from jobs.rerank.plan import plan_rerank_job, precheck
from jobs.rerank.summary import RerankSummary

log = logging.getLogger("batch_embed")

CONFIG = RerankJobConfig
__all__ = ["CONFIG", "add_arguments", "precheck", "run", "run_from_args"]


def run(cfg: RerankJobConfig) -> RerankSummary:
    """Plan (fast checks), start Ray, run; returns the summary."""
    plan = plan_rerank_job(cfg)
    log.info("%d shard(s), %d rows, reranker %s -> %s", len(plan.shards), plan.total_rows, cfg.model.name,
             plan.target.sink.main_uri)
    with table_lock(plan.target, cfg.sink) as lock:  # before Ray starts, as in the embedding job
        init_ray(cfg.run.ray_address)
        return run_pipeline(plan, lock)


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, RerankJobConfig, run)
