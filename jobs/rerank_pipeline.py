"""Compose the reranking pipeline and drive it through the shared commit loop.

pairs:   PairsSource (a row per query) -> RowValidator -> Reranker (actor pool) -> RerankFragmentWriter
queries: ParquetShardSource -> RowValidator -> Embedder (actor pool, the candidates table's model)
         -> retrieve_candidates (tasks, exact top-k) -> Reranker (actor pool) -> RerankFragmentWriter
then LanceCommitter on the driver, as in the embedding job.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jobs.committed_run import TableRun, run_committed
from jobs.pipeline import default_summary_path, engine_pool_args, resolve_gpus
from jobs.rerank_plan import RerankPlan
from jobs.summary import RerankSummary, actors_report, write_summary
from operators.candidate_retriever import retrieve_candidates
from operators.embedder import Embedder
from operators.pairs_source import PairsSource
from operators.parquet_source import ParquetShardSource
from operators.rerank_sink import RerankFragmentWriter
from operators.reranker import Reranker
from operators.row_validator import RowValidator
from operators.storage import fsspec_options
from operators.table_index import TableIndex
from operators.table_lock import TableLock


def build_pipeline(plan: RerankPlan, gpus: float, registry: Any, index: Any = None):
    """The lazy Ray Dataset whose rows are the writer's reports."""
    import ray.data

    cfg, eng = plan.config, plan.config.engine
    actor_args = engine_pool_args(eng, gpus, pools=2 if plan.query_embedding is not None else 1)
    shard_index = {s.path: i for i, s in enumerate(plan.shards)}
    if plan.pair_columns is not None:
        ds = ray.data.read_datasource(PairsSource(plan.fs, plan.shards, plan.pair_columns, done=plan.done))
    else:
        q = cfg.queries
        assert q is not None
        ds = ray.data.read_datasource(ParquetShardSource(plan.fs, plan.shards, q.id_column, q.text_column, [],
                                                         done=plan.done))
    validator = RowValidator(registry, shard_index, plan.validator_provenance, index, skip_existing=True)
    ds = ds.map_batches(validator, batch_format="pyarrow", batch_size=None)
    if plan.query_embedding is not None:
        ds = ds.map_batches(Embedder, fn_constructor_args=(plan.embedder_spec(gpus),),
                            batch_size=plan.query_rows_per_batch, batch_format="pyarrow", **actor_args)
        assert cfg.candidates is not None
        ds = ds.map_batches(retrieve_candidates, fn_kwargs={"spec": plan.retrieval},
                            batch_size=cfg.candidates.queries_per_scan, batch_format="pyarrow")
    ds = ds.map_batches(Reranker, fn_constructor_args=(plan.reranker_spec(gpus),), batch_size=plan.queries_per_batch,
                        batch_format="pyarrow", **actor_args)
    return ds.map_batches(RerankFragmentWriter(plan.sink), batch_size=plan.queries_per_fragment,
                          batch_format="pyarrow")  # no runtime_env: see lance_sink.fragment_writer


def run_pipeline(plan: RerankPlan, lock: TableLock) -> RerankSummary:
    import ray
    from ray.data import DataContext

    cfg = plan.config
    started = datetime.now(timezone.utc)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    gpus = resolve_gpus(cfg.engine.gpus_per_actor)

    def make_index():
        if cfg.sink.mode.value != "append" or plan.main_version is None:
            return None
        # Queries the table already holds (before this run) are skipped.
        return ray.remote(num_cpus=0)(TableIndex).remote(plan.sink.main_uri, plan.sink.storage_options,
                                                         plan.fragment_floor, "query_id", None)

    run = TableRun.for_plan(plan, cfg.sink, cfg.run.progress, id_column="query_id",
                            unit="pair" if plan.pair_columns is not None else "query",
                            engine_pools=("Reranker",) if plan.query_embedding is None else ("Embedder", "Reranker"))
    result = run_committed(run, lock, lambda registry, index: build_pipeline(plan, gpus, registry, index),
                           make_index)
    c = result.committer
    summary = RerankSummary(
        table=cfg.sink.table, table_uri=plan.sink.main_uri, table_version=c.main.version,
        rejected_table=f"{cfg.sink.table}_rejected", rejected_version=c.rejected.version,
        model=cfg.model.name, mode=cfg.sink.mode.value,
        input="pairs" if plan.pair_columns is not None else f"queries + top {plan.retrieval.top_k} of "
        f"{plan.retrieval.uri} (version {plan.retrieval.version})",
        shards=len(plan.shards), rows_read=plan.total_rows, rows_resumed=plan.rows_done,
        queries_reranked=c.actions["queries"], queries_skipped=c.actions["skipped_queries"],
        rejected_rows=c.rows_rejected, pairs_written=c.rows_written, pairs_unscored=c.actions["unscored_pairs"],
        rejected_by_reason=dict(c.reasons), tokens=c.tokens, seconds=result.seconds, commits=c.commits,
        run_id=plan.run_id, orphans_removed=result.orphans_removed,
        actors=actors_report(cfg.engine, gpus, result.actor_timeline),
        throughput=result.throughput,
    )
    # Every source row is in exactly one place: committed by this attempt (either table),
    # skipped as already reranked, or committed by an earlier attempt of this run.
    committed = c.main.committed_source_rows + c.rejected.committed_source_rows
    if committed + c.unchanged_source_rows + plan.rows_done != plan.total_rows:
        raise RuntimeError(
            f"row accounting mismatch: read {plan.total_rows} source rows; committed {committed}, skipped "
            f"{c.unchanged_source_rows}, committed by earlier attempts {plan.rows_done}"
        )
    summary.summary_path = cfg.run.summary_path or default_summary_path(cfg.sink.uri, cfg.sink.table, started)
    write_summary(summary, summary.summary_path, fsspec_options(summary.summary_path, cfg.sink.storage_options))
    return summary
