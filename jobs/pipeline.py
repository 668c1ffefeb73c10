"""Compose the operators into a lazy Ray Data pipeline and drive it to committed Lance versions.

read (ParquetShardSource) -> RowValidator -> InputTokenizer (tasks) -> Embedder (autoscaling actor pool)
-> LanceFragmentWriter (tasks) -> LanceCommitter (driver, every N rows / T seconds)
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from jobs.committed_run import TableRun, run_committed
from jobs.plan import EmbedPlan
from jobs.summary import RunSummary, actors_report, write_summary
from operators.embedder import Embedder, EmbedderSpec
from operators.engine import NODE_THREADS_ENV
from operators.input_tokenizer import InputTokenizer
from operators.lance_sink import LanceFragmentWriter
from operators.parquet_source import ParquetShardSource
from operators.row_validator import RowValidator
from operators.storage import fsspec_options
from operators.table_index import TableIndex, missing_ids
from operators.table_lock import TableLock

log = logging.getLogger("batch_embed")

# Worker environment of the engine actors: the engine runs in the actor's own
# process, and vLLM's per-request INFO lines would drown the driver's log.
ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
    # Where the actor tokenises itself (no tokenizer stage: mining, eval, reranking queries, or a
    # model without tokenizer.json), its engine waits meanwhile: on all of the actor's cores
    # (RAYON_NUM_THREADS, see engine_env) MiniLM's 5k-row bench run spent 0.52 s there
    # instead of 0.85 s on one. Explicit, as a job-level runtime_env may say "false"
    # (cluster/submit.py does, for the driver); nothing in the actor forks a child that tokenises.
    "TOKENIZERS_PARALLELISM": "true",
}


def resolve_gpus(setting: float | str) -> float:
    """`auto`: one GPU per actor when the cluster has GPUs, else a CPU engine."""
    if setting != "auto":
        return float(setting)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def largest_node_cpus() -> float:
    import ray

    return max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1)


def resolve_threads(setting: int | str, max_actors: int) -> int:
    """`auto`: share the largest node's cores among the pool's actors (CPU engines)."""
    if setting != "auto":
        return int(setting)
    return max(1, int(largest_node_cpus() // max_actors))


def engines_per_node(eng: Any, node_cpus: float, pools: int = 1) -> int:
    """The most engine actors of the job's pools Ray may place on one node (by their CPU reservation)."""
    return max(1, min(eng.actors.max * pools, int(node_cpus // eng.cpus_per_actor)))


def engine_env(gpus: float, threads: int, per_node: int = 1) -> dict[str, str]:
    """Environment of an engine actor: `threads` compute threads, `per_node` engines that may share its node."""
    # Ray sets OMP_NUM_THREADS=<num_cpus> in actors (1 by default); a CPU engine
    # with one thread runs at ~0.7x of two on a 2-core node. The tokenizer's pool
    # takes the actor's share of the node, not every core of it, on GPU nodes too.
    env = {**ENGINE_ENV, "RAYON_NUM_THREADS": str(threads)}
    if gpus > 0:
        return env
    # What the engine weighs before it puts its threads on real-time scheduling (operators/cpu_scheduling).
    return {**env, "OMP_NUM_THREADS": str(threads), NODE_THREADS_ENV: str(threads * per_node)}


def engine_pool_args(eng: Any, gpus: float, pools: int = 1) -> dict[str, Any]:
    """map_batches arguments of an engine actor pool; `eng` is the job's EngineConfig.

    `pools`: engine pools of the job sharing a node's cores (query embedder + reranker).
    """
    import ray.data

    return {
        "compute": ray.data.ActorPoolStrategy(min_size=eng.actors.min, max_size=eng.actors.max),
        "num_cpus": eng.cpus_per_actor,
        "num_gpus": gpus,
        # Placement: Ray Data spreads actor-pool actors over nodes itself (its "SPREAD" default;
        # passing a scheduling strategy is deprecated in 2.60). tests/test_cluster.py checks that a
        # pool of two engines lands on both nodes of a two-node cluster.
        "runtime_env": {"env_vars": engine_env(gpus, resolve_threads(eng.threads_per_actor, eng.actors.max * pools),
                                               engines_per_node(eng, largest_node_cpus(), pools))},
    }


def build_pipeline(plan: EmbedPlan, gpus: float, registry: Any, index: Any = None):
    """The lazy Ray Dataset whose rows are the writer's fragment reports."""
    import ray.data

    cfg = plan.config
    src, eng = cfg.source, cfg.engine
    source = ParquetShardSource(plan.fs, plan.shards, src.id_column, src.text_column, src.columns, done=plan.done,
                                retry=src.retry.policy())
    shard_index = {s.path: i for i, s in enumerate(plan.shards)}
    embedder = EmbedderSpec(
        model=plan.model,
        engine=plan.engine_spec(gpus),
        input_type=cfg.model.input_type.value,
        instruction=plan.instruction,
        max_tokens=plan.max_tokens,
        dimensions=cfg.model.dimensions,
        width=plan.width,
        batch_tokens=eng.batch_tokens,
    )
    ds = ray.data.read_datasource(source)
    validator = RowValidator(registry, shard_index, plan.provenance, index)
    ds = ds.map_batches(validator, batch_format="pyarrow", batch_size=None)
    # Tokenised in the tasks (Ray Data fuses them with the validator's), so the engine actors only embed.
    ds = ds.map_batches(InputTokenizer(embedder), batch_format="pyarrow", batch_size=None)
    ds = ds.map_batches(
        Embedder,
        fn_constructor_args=(embedder,),
        batch_size=plan.rows_per_batch,
        batch_format="pyarrow",
        **engine_pool_args(eng, gpus),
    )
    return ds.map_batches(
        LanceFragmentWriter(plan.sink),
        batch_size=cfg.sink.rows_per_fragment,
        batch_format="pyarrow",  # no runtime_env: see lance_sink.fragment_writer
    )


def lance_rows(uri: str, storage_options: dict[str, str]) -> int:
    from operators.run_ledger import open_dataset

    ds = open_dataset(uri, storage_options)
    return ds.count_rows() if ds is not None else 0


def default_summary_path(sink_uri: str, table: str, started: datetime) -> str:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    return f"{sink_uri.rstrip('/')}/_runs/{table}-{stamp}.json"


def run_pipeline(plan: EmbedPlan, lock: TableLock) -> RunSummary:
    """Run the pipeline, committing as fragments arrive; returns the summary (also written as JSON).

    `lock`: the table's lease, claimed (`committed_run.table_lock`).
    """
    import ray
    from ray.data import DataContext

    cfg = plan.config
    started = datetime.now(timezone.utc)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    gpus = resolve_gpus(cfg.engine.gpus_per_actor)

    def make_index():
        if cfg.sink.mode.value != "sync" or plan.main_version is None:
            return None
        # Built on the actor itself: the driver never holds the table's ids.
        return ray.remote(num_cpus=0)(TableIndex).remote(plan.sink.main_uri, plan.sink.storage_options,
                                                         plan.fragment_floor)

    # A skipped shard's ids are not "missing from the source": deleting them would lose good rows.
    deletes_skipped = (f"{len(plan.bad_shards)} shard(s) skipped" if plan.bad_shards and cfg.sync.delete_missing
                       and cfg.sink.mode.value == "sync" else None)

    def final_deletes(registry):
        if not cfg.sync.delete_missing or deletes_skipped:
            return None
        return missing_ids(plan.sink.main_uri, plan.sink.storage_options, plan.fragment_floor,
                           lambda hashes: ray.get(registry.seen.remote(hashes)))

    def upkeep():
        from operators.table_upkeep import upkeep as run_upkeep

        when = cfg.upkeep.when.value
        rows = lance_rows(plan.sink.main_uri, plan.sink.storage_options)
        if when == "never" or (when == "auto" and rows < cfg.upkeep.min_rows):
            return None
        log.info("table upkeep: %d rows", rows)
        return run_upkeep(plan.sink.main_uri, plan.sink.storage_options,
                          cfg.upkeep.settings(cfg.sink.keep_versions, cfg.sink.keep_days))

    result = run_committed(TableRun.for_plan(plan, cfg.sink, cfg.run.progress), lock,
                           lambda registry, index: build_pipeline(plan, gpus, registry, index),
                           make_index, final_deletes, upkeep)
    committer, orphans = result.committer, result.orphans_removed

    summary = RunSummary(
        table=cfg.sink.table,
        table_uri=plan.sink.main_uri,
        table_version=committer.main.version,
        rejected_table=f"{cfg.sink.table}_rejected",
        rejected_version=committer.rejected.version,
        model=cfg.model.name,
        dimensions=plan.width,
        mode=cfg.sink.mode.value,
        shards=len(plan.shards),
        rows_read=plan.total_rows,
        rows_written=committer.rows_written,
        rows_rejected=committer.rows_rejected,
        rows_resumed=plan.rows_done,
        rows_new=committer.actions["new"],
        rows_changed=committer.actions["changed"],
        rows_unchanged=committer.actions["unchanged"],
        rows_deleted=committer.deleted,
        rejected_by_reason=dict(committer.reasons),
        tokens=committer.tokens,
        seconds=result.seconds,
        commits=committer.commits,
        run_id=plan.run_id,
        orphans_removed=orphans,
        actors=actors_report(cfg.engine, gpus, result.actor_timeline),
        throughput=result.throughput,
        upkeep=result.after,
        bad_shards={b.path: b.reason for b in plan.bad_shards},
        deletes_skipped=deletes_skipped,
    )
    accounted = summary.rows_written + summary.rows_rejected + summary.rows_unchanged + summary.rows_resumed
    if accounted != summary.rows_read:
        raise RuntimeError(
            f"row accounting mismatch: read {summary.rows_read}, written {summary.rows_written}, rejected "
            f"{summary.rows_rejected}, unchanged {summary.rows_unchanged}, committed by earlier attempts "
            f"{summary.rows_resumed}"
        )
    summary.summary_path = cfg.run.summary_path or default_summary_path(cfg.sink.uri, cfg.sink.table, started)
    write_summary(summary, summary.summary_path, fsspec_options(summary.summary_path, cfg.sink.storage_options))
    return summary
