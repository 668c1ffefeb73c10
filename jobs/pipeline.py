"""Compose the operators into a lazy Ray Data pipeline and drive it to committed Lance versions.

read (ParquetShardSource) -> RowValidator (tasks) -> Embedder (autoscaling actor pool)
-> LanceFragmentWriter (tasks) -> LanceCommitter (driver, every N rows / T seconds)
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from jobs.plan import EmbedPlan
from jobs.summary import RunSummary, write_summary
from operators.embedder import Embedder, EmbedderSpec
from operators.id_registry import IdRegistry
from operators.lance_sink import LanceCommitter, LanceFragmentWriter
from operators.parquet_source import ParquetShardSource
from operators.row_validator import RowValidator
from operators.storage import s3fs_storage_options

# Worker environment of the engine actors: the engine runs in the actor's own
# process, and vLLM's per-request INFO lines would drown the driver's log.
ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "TOKENIZERS_PARALLELISM": "false",
}
# Lance's Rust side warns "No existing dataset ... will be created" for every new fragment.
WRITER_ENV = {"LANCE_LOG": "error"}


def resolve_gpus(setting: float | str) -> float:
    """`auto`: one GPU per actor when the cluster has GPUs, else a CPU engine."""
    if setting != "auto":
        return float(setting)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def resolve_threads(setting: int | str, max_actors: int) -> int:
    """`auto`: share the largest node's cores among the pool's actors (CPU engines)."""
    if setting != "auto":
        return int(setting)
    import ray

    node_cpus = max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1)
    return max(1, int(node_cpus // max_actors))


def engine_env(gpus: float, threads: int) -> dict[str, str]:
    # Ray sets OMP_NUM_THREADS=<num_cpus> in actors (1 by default); a CPU engine
    # with one thread runs at ~0.7x of two on a 2-core node.
    return ENGINE_ENV if gpus > 0 else {**ENGINE_ENV, "OMP_NUM_THREADS": str(threads)}


def build_pipeline(plan: EmbedPlan, gpus: float, registry: Any):
    """The lazy Ray Dataset whose rows are the writer's fragment reports."""
    import ray.data

    cfg = plan.config
    src, eng = cfg.source, cfg.engine
    source = ParquetShardSource(plan.fs, plan.shards, src.id_column, src.text_column, src.columns)
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
    ds = ds.map_batches(RowValidator(registry, shard_index), batch_format="pyarrow", batch_size=None)
    ds = ds.map_batches(
        Embedder,
        fn_constructor_args=(embedder,),
        batch_size=plan.rows_per_batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=eng.actors.min, max_size=eng.actors.max),
        num_cpus=eng.cpus_per_actor,
        num_gpus=gpus,
        runtime_env={"env_vars": engine_env(gpus, resolve_threads(eng.threads_per_actor, eng.actors.max))},
    )
    return ds.map_batches(
        LanceFragmentWriter(plan.sink),
        batch_size=cfg.sink.rows_per_fragment,
        batch_format="pyarrow",
        runtime_env={"env_vars": WRITER_ENV},
    )


def default_summary_path(plan: EmbedPlan, started: datetime) -> str:
    sink = plan.config.sink
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    return f"{sink.uri.rstrip('/')}/_runs/{sink.table}-{stamp}.json"


def run_pipeline(plan: EmbedPlan) -> RunSummary:
    """Run the pipeline, committing as fragments arrive; returns the summary (also written as JSON)."""
    import ray
    from ray.data import DataContext
    from tqdm import tqdm

    cfg = plan.config
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    gpus = resolve_gpus(cfg.engine.gpus_per_actor)
    registry = ray.remote(num_cpus=0)(IdRegistry).remote()
    committer = LanceCommitter(
        plan.sink,
        mode=cfg.sink.mode.value,
        main_exists=plan.main_exists,
        rejected_exists=plan.rejected_exists,
        commit_every_rows=cfg.sink.commit_every_rows,
        commit_every_seconds=cfg.sink.commit_every_seconds,
    )
    bar = tqdm(total=plan.total_rows, unit="row", desc="embedded", disable=not cfg.run.progress)
    try:
        for batch in build_pipeline(plan, gpus, registry).iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                committer.add(row)
                bar.update(row["rows"])
            committer.maybe_commit()
        committer.finish()
    finally:
        bar.close()
        ray.kill(registry)

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
        rejected_by_reason=dict(committer.reasons),
        tokens=committer.tokens,
        seconds=time.monotonic() - t0,
        commits=committer.commits,
        actors={"min": cfg.engine.actors.min, "max": cfg.engine.actors.max, "gpus_per_actor": gpus},
    )
    if summary.rows_written + summary.rows_rejected != summary.rows_read:
        raise RuntimeError(
            f"row accounting mismatch: read {summary.rows_read}, written {summary.rows_written}, "
            f"rejected {summary.rows_rejected}"
        )
    summary.summary_path = cfg.run.summary_path or default_summary_path(plan, started)
    options = s3fs_storage_options(cfg.sink.storage_options) if "://" in summary.summary_path else {}
    write_summary(summary, summary.summary_path, options)
    return summary
