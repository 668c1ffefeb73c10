"""`batch-embed eval`: retrieval quality of a vector table on judged queries, per Matryoshka size.

read queries -> mark (judged, non-empty) -> Embedder (the table's own model and instruction,
one engine pool) -> retrieve_at_dims (tasks: exact top-k at every size in one scan of the
table) -> [Reranker on the first size's top rerank_top_k] -> rankings on the driver ->
metrics (ir-measures) -> summary JSON (--out) and HTML report next to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from jobs.embed import add_arguments as add_job_arguments
from jobs.embed import init_ray, run_command
from jobs.eval_config import EvalJobConfig
from jobs.eval_metrics import evaluate
from jobs.eval_plan import EvalPlan, plan_eval
from jobs.eval_summary import EvalSummary
from operators.row_validator import mark_blank


def mark_queries(batch: pa.Table, judged: frozenset[str]) -> pa.Table:
    """`action` = `new` for queries to rank; `reject_reason` for judged ones that cannot be (they score 0)."""
    reason = mark_blank(batch.column("reject_reason"), batch.column("text"), "null_query", "empty_query")
    is_judged = pc.is_in(batch.column("id"), pa.array(sorted(judged), pa.string()))
    batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
    action = pc.if_else(pc.and_(pc.fill_null(is_judged, False), pc.is_null(reason)), pa.scalar("new"),
                        pa.scalar(None, pa.string()))
    return batch.append_column("judged", pc.fill_null(is_judged, False)).append_column("action", action)


def cut_candidates(batch: pa.Table, k: int) -> pa.Table:
    """Only the first `k` candidates go to the reranker."""
    i = batch.schema.get_field_index("doc_text")
    return batch.set_column(i, "doc_text", pc.list_slice(batch.column("doc_text"), 0, k))


def build_pipeline(plan: EvalPlan, gpus: float):
    import ray.data

    from jobs.pipeline import engine_pool_args
    from jobs.rerank_plan import reranker_spec
    from operators.embedder import Embedder
    from operators.mrl_retriever import retrieve_at_dims
    from operators.parquet_source import ParquetShardSource
    from operators.reranker import Reranker

    cfg, eng = plan.config, plan.config.engine
    q = cfg.queries
    actor_args = engine_pool_args(eng, gpus, pools=2 if plan.reranker else 1)
    ds = ray.data.read_datasource(ParquetShardSource(plan.fs, plan.shards, q.id_column, q.text_column, []))
    ds = ds.map_batches(mark_queries, fn_kwargs={"judged": frozenset(plan.judged)}, batch_format="pyarrow",
                        batch_size=None)
    ds = ds.map_batches(Embedder, fn_constructor_args=(plan.embedding.embedder_spec(gpus, eng),),
                        batch_size=plan.query_rows_per_batch, batch_format="pyarrow", **actor_args)
    ds = ds.map_batches(retrieve_at_dims, fn_kwargs={"spec": plan.retrieval}, batch_size=cfg.eval.queries_per_scan,
                        batch_format="pyarrow")
    keep = ["id", "judged", "reject_reason", "query_tokens"]
    keep += [c for d in plan.dims for c in (f"doc_id@{d}", f"score@{d}")]
    if plan.reranker is not None:
        assert cfg.reranker is not None
        model, max_tokens = plan.reranker
        ds = ds.map_batches(cut_candidates, fn_kwargs={"k": cfg.eval.rerank_top_k}, batch_format="pyarrow",
                            batch_size=None)
        per_batch = max(1, eng.batch_tokens // (cfg.eval.rerank_top_k * 128))
        ds = ds.map_batches(Reranker, fn_constructor_args=(reranker_spec(cfg.reranker, model, max_tokens, eng, gpus),),
                            batch_size=per_batch, batch_format="pyarrow", **actor_args)
        keep += ["rerank_score", "rank", "n_tokens"]
    return ds.select_columns(keep)


def reranked_order(doc_ids: list[str], ranks: list[int | None] | None) -> list[tuple[str, float]]:
    """The reranked top (rank 1 first), then unscored candidates and those past the reranked depth in
    retrieval order: a ranking as deep as retrieval's, so recall@100 after reranking is comparable."""
    ranks = ranks or []
    scored = sorted((r, i) for i, r in enumerate(ranks) if r is not None)
    order = [i for _, i in scored] + [i for i in range(len(doc_ids)) if i >= len(ranks) or ranks[i] is None]
    return [(doc_ids[i], float(len(order) - n)) for n, i in enumerate(order)]


def run(cfg: EvalJobConfig) -> EvalSummary:
    from ray.data import DataContext

    from jobs.pipeline import resolve_gpus
    from jobs.summary import write_summary
    from operators.storage import fsspec_options

    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    plan = plan_eval(cfg)
    init_ray(cfg.run.ray_address)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    ds = build_pipeline(plan, resolve_gpus(cfg.engine.gpus_per_actor))
    rankings: dict[int, dict[str, list[tuple[str, float]]]] = {d: {} for d in plan.dims}
    reranked: dict[str, list[tuple[str, float]]] = {}
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    read = unjudged = tokens = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            read += 1
            qid = row["id"]
            if qid is None or not row["judged"]:
                unjudged += 1
                continue
            if qid in seen:  # a judged query listed twice is ranked once
                rejected["duplicate_query_id"] += 1
                continue
            seen.add(qid)
            tokens += row["query_tokens"] or 0
            if row["reject_reason"]:
                rejected[row["reject_reason"].split(":", 1)[0]] += 1
                continue
            for d in plan.dims:
                rankings[d][qid] = list(zip(row[f"doc_id@{d}"], row[f"score@{d}"], strict=True))
            if plan.reranker is not None:
                tokens += row["n_tokens"] or 0
                reranked[qid] = reranked_order(row[f"doc_id@{plan.dims[0]}"], row["rank"])
    judgements = plan.qrels.judgements
    evaluated = {q: judgements[q] for q in plan.judged if q in seen}
    metrics = cfg.eval.metrics
    summary = EvalSummary(
        table=cfg.table.name, table_uri=plan.retrieval.uri, table_version=plan.retrieval.version,
        model=plan.embedding.model.name, instruction=plan.embedding.instruction, stored_dims=plan.stored_dims,
        metrics=metrics, by_dims={d: evaluate(metrics, evaluated, rankings[d]) for d in plan.dims},
        bytes_per_row={d: d * plan.bytes_per_value for d in plan.dims}, queries_read=read,
        queries_evaluated=sum(1 for q in evaluated if q in rankings[plan.dims[0]]), queries_unjudged=unjudged,
        judged_queries_missing=len(plan.judged - seen), queries_rejected=dict(sorted(rejected.items())),
        judgements=plan.qrels.rows, judgements_duplicated=plan.qrels.duplicates,
        judged_docs_missing=plan.judged_docs_missing, tokens=tokens, seconds=time.monotonic() - t0,
    )
    if plan.reranker is not None:
        assert cfg.reranker is not None
        summary.reranked = evaluate(metrics, evaluated, reranked)
        summary.rerank = {"model": cfg.reranker.name, "top_k": cfg.eval.rerank_top_k, "dims": plan.dims[0]}
    path = cfg.output.path or default_eval_path(cfg.table.uri, cfg.table.name, started)
    write_summary(summary, path, fsspec_options(path, cfg.output.storage_options or cfg.table.storage_options))
    return summary


def default_eval_path(db_uri: str, table: str, started: datetime) -> str:
    return f"{db_uri.rstrip('/')}/_runs/{table}-eval-{started.strftime('%Y%m%dT%H%M%SZ')}.json"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed eval", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
