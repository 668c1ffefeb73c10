"""`batch-embed eval`: retrieval quality of a vector table on judged queries, per Matryoshka size.

read queries -> mark (judged, non-empty) -> Embedder (the table's own model and instruction,
one engine pool) -> retrieve_top_k (tasks: exact top-k at every size in one scan of the
table) -> [Reranker on the first size's top rerank_top_k] -> rankings on the driver ->
metrics (ir-measures) -> summary JSON (--out) and HTML report next to it.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

from jobs.core.command import add_arguments as add_job_arguments
from jobs.core.command import init_ray, run_command
from jobs.core.config import ConfigError
from jobs.core.engine_pool import resolve_gpus
from jobs.core.metrics import evaluate
from jobs.core.paths import run_stamp, summary_path
from jobs.core.summary import write_summary
from jobs.eval.config import EvalJobConfig
from jobs.eval.pipeline import build_pipeline, collect
from jobs.eval.plan import EvalPlan, plan_eval
from jobs.eval.summary import EvalSummary
from operators.infer.engine_clock import RunClock
from operators.storage import fsspec_options

CONFIG = EvalJobConfig


def run(cfg: EvalJobConfig) -> EvalSummary:
    """Plan (fast checks), start Ray, rank every judged query, compute the metrics (and those of the `compare:`
    table on the same queries); returns the summary."""
    from ray.data import DataContext

    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    plan = plan_eval(cfg)
    other = plan_compare(cfg)  # checked before Ray starts too
    init_ray(cfg.run.ray_address)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    summary = evaluate_plan(plan, t0)
    if other is not None:
        summary.compare = side_by_side(summary, evaluate_plan(other, time.monotonic()))
        summary.seconds = time.monotonic() - t0
    path = cfg.output.path or summary_path(cfg.table.uri, cfg.table.name, f"eval-{run_stamp(started)}")
    write_summary(summary, path, fsspec_options(path, cfg.output.storage_options or cfg.table.storage_options))
    return summary


def evaluate_plan(plan: EvalPlan, t0: float) -> EvalSummary:
    """Rank the plan's judged queries (Ray is up) and score them."""
    cfg = plan.config
    clock = RunClock()
    ranked = collect(plan, build_pipeline(plan, resolve_gpus(cfg.engine.gpus_per_actor), clock.ledger))
    judgements = plan.qrels.judgements
    evaluated = {q: judgements[q] for q in plan.judged if q in ranked.seen}
    metrics = cfg.eval.metrics
    summary = EvalSummary(
        table=cfg.table.name, table_uri=plan.retrieval.uri, table_version=plan.retrieval.version,
        model=plan.embedding.model.name, instruction=plan.embedding.instruction, stored_dims=plan.stored_dims,
        metrics=metrics, by_dims={d: evaluate(metrics, evaluated, ranked.by_dims[d]) for d in plan.dims},
        bytes_per_row={d: d * plan.bytes_per_value for d in plan.dims}, queries_read=ranked.read,
        queries_evaluated=sum(1 for q in evaluated if q in ranked.by_dims[plan.dims[0]]),
        queries_unjudged=ranked.unjudged, judged_queries_missing=len(plan.judged - ranked.seen),
        queries_rejected=dict(sorted(ranked.rejected.items())), judgements=plan.qrels.rows,
        judgements_duplicated=plan.qrels.duplicates, judged_docs_missing=plan.judged_docs_missing,
        tokens=ranked.tokens, seconds=time.monotonic() - t0, time_split=clock.split(),
    )
    if plan.reranker is not None:
        assert cfg.reranker is not None
        summary.reranked = evaluate(metrics, evaluated, ranked.reranked)
        summary.rerank = {"model": cfg.reranker.name, "top_k": cfg.eval.rerank_top_k, "dims": plan.dims[0]}
    return summary


def plan_compare(cfg: EvalJobConfig) -> EvalPlan | None:
    """The `compare:` table's plan: the same queries, judgements and sizes (no reranking); errors say `compare`."""
    if cfg.compare is None:
        return None
    other = cfg.model_copy(update={"table": cfg.compare.table(cfg.table), "compare": None,
                                   "eval": cfg.eval.model_copy(update={"rerank": False})})
    try:
        return plan_eval(other)
    except ConfigError as err:
        raise ConfigError(f"compare: {err}") from None


def side_by_side(this: EvalSummary, other: EvalSummary) -> dict:
    """The compared table's metrics per size, and this table's lead over it (this - other)."""
    dims = [d for d in sorted(this.by_dims, reverse=True) if d in other.by_dims]
    return {"table": other.table, "table_uri": other.table_uri, "table_version": other.table_version,
            "model": other.model, "queries_evaluated": other.queries_evaluated,
            "dims": {str(d): {m: round(v, 6) for m, v in other.by_dims[d].items()} for d in dims},
            "delta": {str(d): {m: round(this.by_dims[d][m] - other.by_dims[d][m], 6) for m in this.metrics}
                      for d in dims}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument("--out", help="metrics JSON (local or s3://); the HTML report goes next to it")
    parser.add_argument("--dims", help="Matryoshka sizes to compare, e.g. 1024,512,256,128")
    parser.add_argument("--rerank", action="store_true", help="also rerank the top eval.rerank_top_k and evaluate")


def overrides_from_flags(args: argparse.Namespace) -> list[str]:
    """The eval flags as `--set` overrides, so one config path validates them all."""
    extra = []
    if args.out:
        extra.append(f"output.path={args.out}")
    if args.dims:
        extra.append(f"eval.dims=[{args.dims}]")
    if args.rerank:
        extra.append("eval.rerank=true")
    return extra


def run_from_args(args: argparse.Namespace) -> int:
    args.overrides = [*args.overrides, *overrides_from_flags(args)]
    return run_command(args, EvalJobConfig, run)
