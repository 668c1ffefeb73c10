"""A run that writes one Lance table exactly once, driven by its job step by step.

The embedding job and the reranking job differ in their pipelines and tables; what makes
a run exactly-once does not: one lease on the table, an id registry seeded with what a
killed attempt of this run committed, one committer on the driver that records progress
inside each commit, and removal of files no commit references, all while the lease is held.
A job reads top to bottom:

    with CommittedRun(plan.target, cfg.sink, lock, total_rows=...) as run:  # lease confirmed, registry up
        index = run.table_index(...)                        # helpers live as long as the run
        run.consume(build_pipeline(plan, run.registry, index, run.ledger))   # commits as fragments arrive
        run.finish(deletes)                                 # last commit, orphans removed
        upkeep(...)                                         # still under the lease
    summary from run.committer, run.seconds, run.actor_timeline, run.throughput, run.time_split
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from jobs.core.paths import lock_path
from jobs.core.report.actor_timeline import ActorTimeline
from jobs.core.report.throughput_timeline import ThroughputTimeline
from jobs.core.table_target import TableTarget
from operators.driver_actors import driver_node_actor
from operators.infer.engine_clock import TimeLedger, ledger_split
from operators.prepare.id_registry import REGISTRY_ROWS_PER_ACTOR, IdRegistry, RegistryClient, partitions_for
from operators.prepare.table_index import INDEX_ROWS_PER_ACTOR, IndexClient, TableIndex, scan_ids
from operators.storage import fsspec_options
from operators.write import progress as prog
from operators.write.lance_committer import LanceCommitter
from operators.write.run_ledger import drop_candidates, open_dataset, remove_orphans
from operators.write.table_lock import TableLock

log = logging.getLogger("batch_embed")

# Owner recorded for ids committed by an earlier attempt: no source row of this attempt has it.
COMMITTED_OWNER = np.iinfo(np.uint64).max


def table_lock(target: TableTarget, sink: Any) -> TableLock:
    """A planned run's table lease (`sink`: the job's TableSinkConfig); `with table_lock(...) as lock:` claims
    it, before Ray starts, so a locked table fails at once and the lease's settle pause overlaps Ray's start."""
    return TableLock(lock_path(sink.uri, sink.table), target.run_id, fsspec_options(sink.uri, sink.storage_options),
                     sink.lock_timeout_seconds)


def source_rows_of(report: dict[str, Any]) -> int:
    """Source rows a writer report accounts for (a reranked query writes many table rows)."""
    if report["table"] == "unchanged":
        return int(report["rows"])
    return prog.total_rows(prog.loads(report["progress"]))


class CommittedRun:
    """One attempt at writing `target` under `lock` (claimed by the caller, who releases it).

    `sink`: the job's TableSinkConfig (mode, commit cadence); `total_rows`: source rows of the
    run; `id_column`: the main table's key, seeded into the registry on resume; `unit`: what
    the progress bar counts; `engine_pools`: map_batches classes whose actors the summary charts.
    """

    def __init__(self, target: TableTarget, sink: Any, lock: TableLock, *, total_rows: int,
                 show_progress: bool = True, id_column: str = "id", unit: str = "row",
                 engine_pools: tuple[str, ...] = ("Embedder",)):
        self.target, self.sink, self.lock = target, sink, lock
        self.total_rows, self.show_progress = total_rows, show_progress
        self.id_column, self.unit, self.engine_pools = id_column, unit, engine_pools
        self.registry: Any = None
        self.ledger: Any = None  # TimeLedger: engines' and writers' per-batch timings (operators/infer/engine_clock.py)
        self.time_split: dict[str, Any] | None = None  # where the time went, for the summary
        self._commit_s = 0.0
        self.committer: LanceCommitter | None = None
        self.orphans_removed = 0
        self.candidate_version: int | None = None  # a gated rebuild's detached version (stage)
        self.seconds = 0.0
        self.actor_timeline: dict[str, list[list[float]]] | None = None  # {pool: [[seconds, alive actors], ...]}
        self.throughput: list[list[float]] | None = None  # [[seconds, source rows done, tokens], ...]
        self._actors: list[Any] = []
        self._t0 = 0.0
        self._started = 0.0
        self._throughput = ThroughputTimeline()

    def __enter__(self) -> CommittedRun:
        self._t0 = time.monotonic()
        self._started = time.time()  # files older than this and in no version are a killed attempt's
        self.lock.confirm()
        t = self.target
        try:
            if t.resuming:
                log.info("resuming run %s: %d source rows already committed", t.run_id, prog.total_rows(t.done))
            parts = partitions_for(self.total_rows, REGISTRY_ROWS_PER_ACTOR)
            self.registry = RegistryClient([self.actor(IdRegistry) for _ in range(parts)])
            self.ledger = self.actor(TimeLedger)
            if t.resuming:
                self._seed_registry()
            self.committer = LanceCommitter.for_run(
                t.sink, mode=self.sink.mode.value, main_version=t.main_version, rejected_version=t.rejected_version,
                resuming=t.resuming, run_id=t.run_id, source=t.source_signature, floor=t.fragment_floor,
                commit_every_rows=self.sink.commit_every_rows, commit_every_seconds=self.sink.commit_every_seconds,
                on_commit=self.lock.refresh, before_commit=self.lock.check,
            )
            if t.provenance_update is not None:
                self.lock.check()
                self.committer.main.record_provenance(t.provenance_update)
        except BaseException as err:
            self.__exit__(type(err), err, None)
            raise
        return self

    def _time_split(self) -> dict[str, Any] | None:
        """The ledger's engine and writer timings, with the driver's commit seconds and the run's wall time."""
        split = ledger_split(self.ledger, self._started)
        if split is None:
            return None
        commits = self.committer.commit_seconds if self.committer is not None else []
        return {**split, "commit_s": round(self._commit_s, 3), "wall_s": round(time.monotonic() - self._t0, 3),
                "commit_first_s": commits[0] if commits else None, "commit_last_s": commits[-1] if commits else None,
                "commit_max_s": max(commits, default=None)}

    def table_index(self, fingerprint_column: str | None, columns: tuple[str, ...] = ()) -> IndexClient:
        """The table's rows before this run (TableIndex), split over actors by fragment for a large table."""
        t = self.target
        ds = open_dataset(t.sink.main_uri, t.sink.storage_options)
        parts = partitions_for(ds.count_rows() if ds is not None else 0, INDEX_ROWS_PER_ACTOR)
        return IndexClient([self.actor(TableIndex, t.sink.main_uri, t.sink.storage_options, t.fragment_floor,
                                       self.id_column, fingerprint_column, columns, part, parts)
                            for part in range(parts)])

    def actor(self, cls: type, *args: Any) -> Any:
        """A helper actor (id registry, table index) that lives as long as the run, on the driver's node."""
        handle = driver_node_actor(cls, *args)
        self._actors.append(handle)
        return handle

    def consume(self, dataset: Any) -> None:
        """Drive `dataset` (rows: writer reports) to the end, committing every N rows / T seconds."""
        from tqdm import tqdm

        assert self.committer is not None, "use CommittedRun as a context manager"
        t = self.target
        bar = tqdm(total=self.total_rows, initial=prog.total_rows(t.done), unit=self.unit, desc=self.sink.table,
                   disable=not self.show_progress)
        timeline = ActorTimeline(self.engine_pools)
        try:
            with timeline:
                throughput = ThroughputTimeline(t0=timeline.t0)
                for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for report in batch.to_pylist():
                        self.committer.add(report)
                        rows = source_rows_of(report)
                        bar.update(rows)
                        throughput.add(rows, report["tokens"] if report["table"] != "unchanged" else 0)
                    started = time.monotonic()
                    self.committer.maybe_commit()
                    self._commit_s += time.monotonic() - started
        finally:
            bar.close()
        self.actor_timeline, self._throughput = timeline.points, throughput

    def stage(self) -> int:
        """overwrite with a gate: every row accounted for, the rebuilt table committed as a detached version
        (its number), which readers do not see; `finish` then publishes it, or the run ends without."""
        assert self.committer is not None
        self.check_accounting()
        self.lock.check()
        self.candidate_version = self.committer.stage()
        log.info("sink.table %s: candidate staged as detached version %d", self.sink.table, self.candidate_version)
        return self.candidate_version

    def finish(self, deletes: dict[int, list[str]] | None = None) -> None:
        """The last commit (marking the run complete, with `deletes` {fragment: ids}), then orphan clean-up.

        The rows are accounted for first: a mismatch fails the run before the commit that would mark
        it complete, so the table keeps its last good version and re-running resumes.
        """
        assert self.committer is not None
        self.check_accounting()
        started = time.monotonic()
        self.committer.finish(deletes)
        self._commit_s += time.monotonic() - started
        self.close_unpublished()
        # Files of killed attempts were never committed; removing them needs the lock this run still
        # holds. (A retried writer task's files are newer than this attempt: the next run removes them.)
        sink = self.target.sink
        fs_options = fsspec_options(sink.main_uri, self.sink.storage_options)
        # Candidates refused by earlier gated runs; this run's own too once it is published.
        drop_candidates(sink.main_uri, fs_options, older_than=time.time() if self.candidate_version else self._started)
        self.orphans_removed = remove_orphans(sink.main_uri, sink.rejected_uri, storage_options=sink.storage_options,
                                              fs_options=fs_options,
                                              older_than=self._started)
        self.seconds = time.monotonic() - self._t0

    def close_unpublished(self) -> None:
        """The run's timings, for the summary (`finish` ends with this; a refused gated rebuild ends here)."""
        self.throughput = self._throughput.close()
        self.time_split = self._time_split()
        self.seconds = time.monotonic() - self._t0

    def check_accounting(self) -> None:
        """Every source row is in exactly one place: written or rejected by this attempt (committed or about
        to be), already in the table unchanged, or committed by an earlier attempt of this run."""
        c = self.committer
        assert c is not None
        this_attempt = c.source_rows_accounted()
        earlier = prog.total_rows(self.target.done)
        if this_attempt + c.unchanged_source_rows + earlier != self.total_rows:
            raise RuntimeError(
                f"row accounting mismatch: read {self.total_rows} source rows; written or rejected {this_attempt}, "
                f"unchanged {c.unchanged_source_rows}, committed by earlier attempts {earlier}. Nothing was marked "
                "complete: the table keeps its last commit and re-running resumes"
            )

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        import ray

        for handle in self._actors:
            ray.kill(handle)
        self._actors.clear()
        if exc is not None and isinstance(exc, Exception):
            # A storage outage, a bad shard mid-read, a crash: commits are atomic, so the table is at its
            # last good version and the run's ledger says what is in it.
            log.error("run %s stopped (%s); the table keeps every commit made before this, and re-running the same "
                      "command resumes from the last one", self.target.run_id, type(exc).__name__)

    def _seed_registry(self) -> None:
        """Claim the ids this run already committed, so a resumed run still rejects their duplicates."""
        # Only the fragments this run wrote (id above its floor): the cost grows with
        # the interrupted run's rows, not with the table.
        sink = self.target.sink
        for _, hashes in scan_ids(sink.main_uri, sink.storage_options, above=self.target.fragment_floor,
                                  id_column=self.id_column):
            hashes = np.unique(hashes)  # a query's id is on each of its pairs
            self.registry.claim(hashes, np.full(len(hashes), COMMITTED_OWNER, dtype=np.uint64))
