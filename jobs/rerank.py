"""`batch-embed rerank` / `python -m jobs.rerank`: score (query, document) pairs with Qwen3-Reranker into LanceDB."""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.embed import add_arguments, init_ray, run_command
from jobs.rerank_config import RerankJobConfig

log = logging.getLogger("batch_embed")


def run(cfg: RerankJobConfig):
    """Plan (fast checks), start Ray, run; returns the RerankSummary."""
    from jobs.committed_run import table_lock
    from jobs.rerank_pipeline import run_pipeline
    from jobs.rerank_plan import plan_rerank_job

    plan = plan_rerank_job(cfg)
    log.info("%d shard(s), %d rows, reranker %s -> %s", len(plan.shards), plan.total_rows, cfg.model.name,
             plan.sink.main_uri)
    with table_lock(plan, cfg.sink) as lock:  # before Ray starts, as in jobs/embed.py
        init_ray(cfg.run.ray_address)
        return run_pipeline(plan, lock)


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, RerankJobConfig, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed rerank", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
