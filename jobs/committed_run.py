"""The loop every job that writes a Lance table shares: lock, id registry, pipeline, committer, clean-up.

The embedding job and the reranking job differ in their pipelines and tables;
what makes a run exactly-once does not: one lease on the table, an id registry
seeded with what a killed attempt of this run committed, one committer on the
driver that records progress inside each commit, and removal of files no
commit references, all while the lease is held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.actor_timeline import ActorTimeline
from jobs.throughput_timeline import ThroughputTimeline
from operators import progress as prog
from operators.id_registry import IdRegistry
from operators.lance_committer import LanceCommitter
from operators.lance_sink import SinkSpec
from operators.run_ledger import remove_orphans
from operators.storage import fsspec_options
from operators.table_index import scan_ids
from operators.table_lock import TableLock

log = logging.getLogger("batch_embed")

# Owner recorded for ids committed by an earlier attempt: no source row of this attempt has it.
COMMITTED_OWNER = np.iinfo(np.uint64).max


@dataclass
class TableRun:
    """What the loop needs to know of a planned run."""

    sink: SinkSpec
    db_uri: str  # the LanceDB database (lock files live under it)
    table: str
    mode: str
    storage_options: dict[str, Any]  # as configured (fsspec or Lance names)
    main_version: int | None
    rejected_version: int | None
    resuming: bool
    run_id: str
    source_signature: str
    fragment_floor: int
    total_rows: int  # source rows
    rows_done: int  # source rows committed by earlier attempts of this run
    commit_every_rows: int
    commit_every_seconds: float
    lock_timeout_seconds: float
    show_progress: bool = True
    id_column: str = "id"  # the main table's key, seeded into the registry on resume
    unit: str = "row"
    engine_pools: tuple[str, ...] = ("Embedder",)  # map_batches classes whose alive actors the summary charts

    @classmethod
    def for_plan(cls, plan: Any, sink: Any, show_progress: bool, **kwargs: Any) -> TableRun:
        """From a job's plan (EmbedPlan, RerankPlan: same run fields) and its sink config section."""
        return cls(
            sink=plan.sink, db_uri=sink.uri, table=sink.table, mode=sink.mode.value,
            storage_options=sink.storage_options, main_version=plan.main_version,
            rejected_version=plan.rejected_version, resuming=plan.resuming, run_id=plan.run_id,
            source_signature=plan.source_signature, fragment_floor=plan.fragment_floor,
            total_rows=plan.total_rows, rows_done=plan.rows_done, commit_every_rows=sink.commit_every_rows,
            commit_every_seconds=sink.commit_every_seconds, lock_timeout_seconds=sink.lock_timeout_seconds,
            show_progress=show_progress, **kwargs,
        )

    @property
    def lock_path(self) -> str:
        return f"{self.db_uri.rstrip('/')}/_locks/{self.table}.json"

    def lock(self) -> TableLock:
        """The table's lease for this run (not yet claimed)."""
        return TableLock(self.lock_path, self.run_id, fsspec_options(self.db_uri, self.storage_options),
                         self.lock_timeout_seconds)


def table_lock(plan: Any, sink: Any) -> TableLock:
    """A planned run's table lease; `with table_lock(...) as lock:` claims it, before Ray starts."""
    return TableRun.for_plan(plan, sink, show_progress=False).lock()


@dataclass
class RunResult:
    committer: LanceCommitter
    orphans_removed: int
    seconds: float
    after: Any = None  # what `after_commit` returned
    actor_timeline: dict[str, list[list[float]]] | None = None  # {pool: [[seconds, alive actors], ...]}
    throughput: list[list[float]] | None = None  # [[seconds, source rows done, tokens], ...] (cumulative)


def seed_registry(run: TableRun, registry: Any) -> int:
    """Claim the ids this run already committed, so a resumed run still rejects their duplicates."""
    import ray

    seeded = 0
    # Only the fragments this run wrote (id above its floor): the cost grows with
    # the interrupted run's rows, not with the table.
    for _, hashes in scan_ids(run.sink.main_uri, run.sink.storage_options, above=run.fragment_floor,
                              id_column=run.id_column):
        hashes = np.unique(hashes)  # a query's id is on each of its pairs
        ray.get(registry.claim.remote(hashes, np.full(len(hashes), COMMITTED_OWNER, dtype=np.uint64)))
        seeded += len(hashes)
    return seeded


def source_rows_of(report: dict[str, Any]) -> int:
    """Source rows a writer report accounts for (a reranked query writes many table rows)."""
    if report["table"] == "unchanged":
        return int(report["rows"])
    return prog.total_rows(prog.loads(report["progress"]))


def run_committed(
    run: TableRun,
    lock: TableLock,
    build: Callable[[Any, Any], Any],
    make_index: Callable[[], Any] | None = None,
    final_deletes: Callable[[Any], dict[int, list[str]] | None] | None = None,
    after_commit: Callable[[], Any] | None = None,
) -> RunResult:
    """Run `build(registry, index)`'s dataset of writer reports to a complete, committed table.

    `lock`: `run.lock()`, claimed by the caller (who releases it) before starting Ray;
    `make_index`: builds the actor that knows the table's existing ids (or None);
    `final_deletes(registry)`: rows to delete in the last commit (sync.delete_missing);
    `after_commit()`: work on the finished table that still needs the lock (upkeep).
    """
    import ray
    from tqdm import tqdm

    t0 = time.monotonic()
    lock.confirm()
    try:
        if run.resuming:
            log.info("resuming run %s: %d source rows already committed", run.run_id, run.rows_done)
        registry = ray.remote(num_cpus=0)(IdRegistry).remote()
        index = None
        try:
            if run.resuming:
                seed_registry(run, registry)
            index = make_index() if make_index is not None else None
            committer = LanceCommitter.for_run(
                run.sink,
                mode=run.mode,
                main_version=run.main_version,
                rejected_version=run.rejected_version,
                resuming=run.resuming,
                run_id=run.run_id,
                source=run.source_signature,
                floor=run.fragment_floor,
                commit_every_rows=run.commit_every_rows,
                commit_every_seconds=run.commit_every_seconds,
                on_commit=lock.refresh,
            )
            bar = tqdm(total=run.total_rows, initial=run.rows_done, unit=run.unit, desc=run.table,
                       disable=not run.show_progress)
            timeline = ActorTimeline(run.engine_pools)
            try:
                with timeline:
                    throughput = ThroughputTimeline(t0=timeline.t0)
                    for batch in build(registry, index).iter_batches(batch_size=None, batch_format="pyarrow"):
                        for report in batch.to_pylist():
                            committer.add(report)
                            rows = source_rows_of(report)
                            bar.update(rows)
                            throughput.add(rows, report["tokens"] if report["table"] != "unchanged" else 0)
                        committer.maybe_commit()
                committer.finish(final_deletes(registry) if final_deletes is not None else None)
                throughput.close()
            finally:
                bar.close()
            # Files of killed attempts and of retried writer tasks were never committed;
            # removing them needs the lock this run still holds.
            orphans = remove_orphans(run.sink.main_uri, run.sink.rejected_uri,
                                     storage_options=run.sink.storage_options)
            seconds = time.monotonic() - t0
            after = after_commit() if after_commit is not None else None
        finally:
            for actor in (registry, index):
                if actor is not None:
                    ray.kill(actor)
    except Exception as err:
        # A storage outage, a bad shard mid-read, a crash: commits are atomic, so the table is at its
        # last good version and the run's ledger says what is in it.
        log.error("run %s stopped (%s); the table keeps every commit made before this, and re-running the same "
                  "command resumes from the last one", run.run_id, type(err).__name__)
        raise
    return RunResult(committer=committer, orphans_removed=orphans, seconds=seconds, after=after,
                     actor_timeline=timeline.points, throughput=throughput.points)
