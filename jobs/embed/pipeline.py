"""Compose the operators into a lazy Ray Data pipeline and drive it to committed Lance versions.

read (ParquetShardSource) -> RowValidator -> InputTokenizer (tasks) -> Embedder (autoscaling actor pool)
-> LanceFragmentWriter (tasks) -> LanceCommitter (driver, every N rows / T seconds)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from jobs.core.committed_run import CommittedRun
from jobs.core.engine_pool import cpu_engine_dtype, engine_pool_args, resolve_gpus
from jobs.core.paths import run_stamp, summary_path
from jobs.core.summary import write_summary
from jobs.core.table_target import record_engine_dtype
from jobs.embed.gate import judge
from jobs.embed.plan import EmbedPlan
from jobs.embed.summary import RunSummary, summarize
from operators.infer.embedder import Embedder
from operators.prepare.input_tokenizer import InputTokenizer, shipped_tokenizer
from operators.prepare.row_validator import DIFF, REJECT, RowValidator
from operators.prepare.table_index import missing_ids
from operators.prepare.unchanged_tally import fold_unchanged
from operators.read.parquet_source import ParquetShardSource
from operators.storage import fsspec_options
from operators.write.lance_sink import WRITER_CPUS, LanceFragmentWriter
from operators.write.run_ledger import open_dataset
from operators.write.table_lock import TableLock

log = logging.getLogger("batch_embed")

# CPUs each read task reserves: a read is I/O and Parquet decoding (~7 us of CPU a row against ~100 for
# tokenising, docs/benchmark.md). A whole CPU per read would keep it from the tokenizer tasks: on a 2-CPU
# node beside an engine the read and one tokenizer task then took both, and rows moved at a third of the
# one-process floor. Reads from an object store wait on the network most of the time anyway.
READ_CPUS = 0.25


def build_pipeline(plan: EmbedPlan, gpus: float, registry: Any, index: Any = None, dtype: str | None = None,
                   ledger: Any = None):
    """The lazy Ray Dataset whose rows are the writer's fragment reports; `dtype`: the engines' (`engine_dtype`);
    `ledger`: the run's TimeLedger, which the engines and writers tell their timings."""
    import ray.data

    cfg = plan.config
    src = cfg.source
    source = ParquetShardSource(plan.fs, plan.shards, src.id_column, src.text_column, src.columns,
                                done=plan.target.done, retry=src.retry.policy())
    shard_index = {s.path: i for i, s in enumerate(plan.shards)}
    embedder = replace(plan.embedder_spec(gpus, dtype), ledger=ledger)
    ds = ray.data.read_datasource(source, ray_remote_args={"num_cpus": READ_CPUS})
    existing = REJECT if cfg.sink.mode.value == "append" else DIFF
    # Validation, the sync fold and tokenising: one task per block (Ray Data fuses stages of equal resources).
    prep = {"batch_format": "pyarrow", "batch_size": None, "num_cpus": cfg.engine.tokenizer_cpus}
    ds = ds.map_batches(RowValidator(registry, shard_index, plan.provenance, index, existing, plan.compared_columns),
                        **prep)
    if index is not None and existing == DIFF:  # a sync night: unchanged rows go no further than their count
        ds = ds.map_batches(fold_unchanged, **prep)
    # Tokenised in the tasks, so the engine actors only embed.
    shipped = shipped_tokenizer(embedder.model, embedder.engine.trust_remote_code)  # hub ids: from the snapshot
    ds = ds.map_batches(InputTokenizer(embedder, ray.put(shipped) if shipped else None), **prep)
    ds = ds.map_batches(Embedder, fn_constructor_args=(embedder,), batch_size=plan.rows_per_batch,
                        batch_format="pyarrow", **engine_pool_args(cfg.engine, gpus))
    # Each engine batch is written as it comes (batch_size=None): gathering rows_per_fragment rows first
    # would hold a slow engine's vectors past sink.commit_every_seconds. Upkeep compacts small fragments.
    return ds.map_batches(LanceFragmentWriter(plan.target.sink, ledger), batch_size=None, num_cpus=WRITER_CPUS,
                          batch_format="pyarrow")  # no runtime_env: see lance_sink.fragment_writer


def deletes_skipped(plan: EmbedPlan) -> str | None:
    """Why sync.delete_missing deletes nothing this run: a skipped shard's ids are not "missing from the
    source", and deleting them would lose good rows."""
    cfg = plan.config
    if plan.bad_shards and cfg.sync.delete_missing and cfg.sink.mode.value == "sync":
        return f"{len(plan.bad_shards)} shard(s) skipped"
    return None


def final_deletes(plan: EmbedPlan, registry: Any) -> dict[int, list[str]] | None:
    """sync.delete_missing: the table's rows whose id no source row claimed this run, by fragment."""
    if not plan.config.sync.delete_missing or deletes_skipped(plan):
        return None
    sink = plan.target.sink
    return missing_ids(sink.main_uri, sink.storage_options, plan.target.fragment_floor, registry.seen)


def upkeep(plan: EmbedPlan) -> Any:
    """Compaction, indexes and old versions when `upkeep.when` asks for them; the UpkeepReport or None."""
    from operators.write.table_upkeep import upkeep as run_upkeep

    cfg, sink = plan.config, plan.target.sink
    when = cfg.upkeep.when.value
    ds = open_dataset(sink.main_uri, sink.storage_options)
    rows = ds.count_rows() if ds is not None else 0
    if when == "never" or (when == "auto" and rows < cfg.upkeep.min_rows):
        return None
    log.info("table upkeep: %d rows", rows)
    return run_upkeep(sink.main_uri, sink.storage_options, cfg.upkeep.settings(cfg.sink.keep_versions,
                                                                                cfg.sink.keep_days))


def engine_dtype(plan: EmbedPlan, gpus: float) -> tuple[str | None, str]:
    """(the dtype every CPU engine of the run loads, decided once for the run; None on GPUs, where vLLM's `auto`
    stays per node), and the dtype the table records for this run. Needs Ray: `auto` may be measured."""
    engine = plan.embedder_spec(gpus).engine
    auto_on_cpu = engine.dtype == "auto" and gpus == 0
    decided = cpu_engine_dtype(engine, plan.config.engine.cpus_per_actor) if auto_on_cpu else None
    return decided, plan.embedder_spec(gpus, decided).engine.recorded_dtype


def run_pipeline(plan: EmbedPlan, lock: TableLock) -> RunSummary:
    """Run the pipeline, committing as fragments arrive; returns the summary (also written as JSON).

    `lock`: the table's lease, claimed (`committed_run.table_lock`).
    """
    from ray.data import DataContext

    cfg = plan.config
    started = datetime.now(timezone.utc)
    DataContext.get_current().enable_progress_bars = cfg.run.progress
    gpus = resolve_gpus(cfg.engine.gpus_per_actor)
    dtype, recorded = engine_dtype(plan, gpus)  # one dtype for every engine of the run, recorded in the table
    target, dtype_note = record_engine_dtype(plan.target, recorded)
    if dtype_note:
        log.warning("sink.table %s: %s", cfg.sink.table, dtype_note)
    plan.target = target
    with CommittedRun(target, cfg.sink, lock, total_rows=plan.total_rows, show_progress=cfg.run.progress) as run:
        index = None
        mode = cfg.sink.mode.value
        if mode in ("sync", "append") and target.main_version is not None:
            # Built on the actors themselves: the driver never holds the table's ids. Append asks only
            # whether an id is taken; sync compares fingerprints and the copied columns.
            sync = mode == "sync"
            index = run.table_index("fingerprint" if sync else None, plan.compared_columns if sync else ())
        run.consume(build_pipeline(plan, gpus, run.registry, index, dtype, run.ledger))
        verdict = None
        if plan.gate is not None:  # the rebuild is judged before readers can see it
            verdict = judge(plan.gate, cfg.sink, cfg.engine, run.stage(), target.main_version, gpus,
                            dtype or cfg.model.dtype.value, run.ledger)
        upkeep_report = None
        if verdict is None or verdict.passed:
            run.finish(final_deletes(plan, run.registry))
            upkeep_report = upkeep(plan)  # still under the lease
        else:
            run.close_unpublished()
    summary = summarize(plan, run, gpus, upkeep_report, deletes_skipped(plan))
    summary.engine_dtype, summary.dtype_note = recorded, dtype_note
    if verdict is not None:
        summary.gate = verdict.to_dict()
        if not verdict.passed:  # what the candidate holds; the table keeps its version
            summary.rows_written, summary.rows_rejected = run.committer.main.pending_rows, 0
            summary.table_version = run.committer.main.base_version or None
    path = cfg.run.summary_path or summary_path(cfg.sink.uri, cfg.sink.table, run_stamp(started))
    write_summary(summary, path, fsspec_options(path, cfg.sink.storage_options))
    return summary
