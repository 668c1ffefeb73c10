"""`batch-embed embed` / `python -m jobs.embed`: Parquet shards -> vLLM embeddings -> LanceDB table."""

from __future__ import annotations

import argparse
import logging

from jobs.core import catalog
from jobs.core.command import add_arguments, init_ray, run_command
from jobs.core.committed_run import table_lock
from jobs.core.config import ConfigError, parse_config
from jobs.embed.config import EmbedJobConfig
from jobs.embed.pipeline import run_pipeline
from jobs.embed.plan import plan_embed_job
from jobs.embed.summary import RunSummary

log = logging.getLogger("batch_embed")

CONFIG = EmbedJobConfig
__all__ = ["CONFIG", "add_arguments", "plan", "run", "run_from_args"]


def plan(cfg: EmbedJobConfig):
    """The run's plan (shards, model, target table), checked, without running it (the bench's stage costs)."""
    return plan_embed_job(cfg)


def in_rerank_section(err: ConfigError) -> ConfigError:
    """The reranking job's error, with its keys put under the embedding config's `rerank:` section."""
    return ConfigError("\n".join(f"rerank.{line}" for line in str(err).splitlines()))


def run(cfg: EmbedJobConfig) -> RunSummary:
    """Plan (fast checks), start Ray, run, then the `rerank:` section if any; returns the summary."""
    rerank = followup = None
    if cfg.rerank is not None:
        rerank = catalog.job("rerank")
        try:  # before hours of embedding, not after
            followup = parse_config(cfg.rerank.job_config(cfg), rerank.CONFIG)
            rerank.precheck(followup)
        except ConfigError as err:
            raise in_rerank_section(err) from None
    plan = plan_embed_job(cfg)
    log.info("%d shard(s), %d rows, model %s, %d dims -> %s", len(plan.shards), plan.total_rows, cfg.model.name,
             plan.dimensions, plan.target.sink.main_uri)
    # The lease is claimed before Ray starts: a locked table fails at once, and the lease's
    # settle pause (operators/write/table_lock) passes while Ray starts instead of after.
    with table_lock(plan.target, cfg.sink) as lock:
        init_ray(cfg.run.ray_address)
        summary = run_pipeline(plan, lock)
    if rerank is not None:
        try:
            summary.rerank = rerank.run(followup)
        except ConfigError as err:
            raise in_rerank_section(err) from None
    return summary


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, EmbedJobConfig, run)
