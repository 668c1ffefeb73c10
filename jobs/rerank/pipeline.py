"""Compose the reranking pipeline and drive it to committed Lance versions.

pairs:   PairsSource (a row per query) -> RowValidator -> Reranker (actor pool) -> RerankFragmentWriter
queries: ParquetShardSource -> RowValidator -> Embedder (actor pool, the candidates table's model)
         -> retrieve_top_k (tasks, exact top-k) -> Reranker (actor pool) -> RerankFragmentWriter
then LanceCommitter on the driver, as in the embedding job.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from jobs.core.committed_run import CommittedRun
from jobs.core.engine_pool import engine_pool_args, resolve_gpus
from jobs.core.paths import run_stamp, summary_path
from jobs.core.summary import write_summary
from jobs.rerank.plan import RerankPlan
from jobs.rerank.summary import RerankSummary, summarize
from operators.infer.embedder import Embedder
from operators.infer.reranker import Reranker
from operators.prepare.row_validator import SKIP, RowValidator
from operators.read.pairs_source import PairsSource
from operators.read.parquet_source import ParquetShardSource
from operators.retrieve.top_k import retrieve_top_k
from operators.storage import fsspec_options
from operators.write.rerank_sink import RerankFragmentWriter
from operators.write.table_lock import TableLock


def build_pipeline(plan: RerankPlan, gpus: float, registry: Any, index: Any = None, ledger: Any = None):
    """The lazy Ray Dataset whose rows are the writer's reports; `ledger`: the run's TimeLedger (reranker timings)."""
    import ray.data

    cfg, eng = plan.config, plan.config.engine
    actor_args = engine_pool_args(eng, gpus, pools=2 if plan.query_embedding is not None else 1)
    shard_index = {s.path: i for i, s in enumerate(plan.shards)}
    done = plan.target.done
    if plan.pair_columns is not None:
        assert cfg.pairs is not None
        ds = ray.data.read_datasource(PairsSource(plan.fs, plan.shards, plan.pair_columns, done=done,
                                                  retry=cfg.pairs.retry.policy()))
    else:
        q = cfg.queries
        assert q is not None
        ds = ray.data.read_datasource(ParquetShardSource(plan.fs, plan.shards, q.id_column, q.text_column, [],
                                                         done=done, retry=q.retry.policy()))
    validator = RowValidator(registry, shard_index, plan.validator_provenance, index, existing=SKIP)
    ds = ds.map_batches(validator, batch_format="pyarrow", batch_size=None)
    if plan.query_embedding is not None:
        ds = ds.map_batches(Embedder, fn_constructor_args=(plan.embedder_spec(gpus),),
                            batch_size=plan.query_rows_per_batch, batch_format="pyarrow", **actor_args)
        assert cfg.candidates is not None
        ds = ds.map_batches(retrieve_top_k, fn_kwargs={"spec": plan.retrieval},
                            batch_size=cfg.candidates.queries_per_scan, batch_format="pyarrow")
    reranker = replace(plan.reranker_spec(gpus), ledger=ledger)
    ds = ds.map_batches(Reranker, fn_constructor_args=(reranker,), batch_size=plan.queries_per_batch,
                        batch_format="pyarrow", **actor_args)
    # As the embedding job: each reranked batch is written as it comes, so commits keep their cadence.
    return ds.map_batches(RerankFragmentWriter(plan.target.sink), batch_size=None,
                          batch_format="pyarrow")  # no runtime_env: see lance_sink.fragment_writer


def run_pipeline(plan: RerankPlan, lock: TableLock) -> RerankSummary:
    """Run the pipeline, committing as fragments arrive; returns the summary (also written as JSON)."""
    from ray.data import DataContext

    cfg = plan.config
    started = datetime.now(timezone.utc)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    gpus = resolve_gpus(cfg.engine.gpus_per_actor)
    target = plan.target
    pools = ("Reranker",) if plan.query_embedding is None else ("Embedder", "Reranker")
    with CommittedRun(target, cfg.sink, lock, total_rows=plan.total_rows, show_progress=cfg.run.progress,
                      id_column="query_id", unit="pair" if plan.pair_columns is not None else "query",
                      engine_pools=pools) as run:
        index = None
        if cfg.sink.mode.value == "append" and target.main_version is not None:
            # Queries the table already holds (before this run) are skipped.
            index = run.table_index(None)
        run.consume(build_pipeline(plan, gpus, run.registry, index, run.ledger))
        run.finish()
    summary = summarize(plan, run, gpus)
    path = cfg.run.summary_path or summary_path(cfg.sink.uri, cfg.sink.table, run_stamp(started))
    write_summary(summary, path, fsspec_options(path, cfg.sink.storage_options))
    return summary
