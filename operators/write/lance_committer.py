"""The single committer: makes written fragments visible, with their progress, every N rows / T seconds.

Each commit is one Lance transaction whose properties record the run and the
source rows it made visible (see run_ledger.py). The rejected table is
committed before the vector table; each records only its own rows, so a kill
between the two loses nothing and duplicates nothing: on resume a row counts as
done if either table committed it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from operators import faults
from operators.prepare.table_index import delete_ids
from operators.write import progress as prog
from operators.write import run_ledger as ledger
from operators.write.lance_sink import METADATA_KEY, SinkSpec


class TableCommits:
    """Commit state of one Lance table for one run."""

    def __init__(self, uri: str, schema: pa.Schema, *, replace: bool, base_version: int, run_id: str,
                 source: str, floor: int, storage_options: dict[str, str]):
        self.uri = uri
        self.schema = schema
        self.replace = replace  # first commit is an Overwrite (create / overwrite), later ones Append
        self.version: int | None = None if replace else base_version
        self.base_version = base_version
        self.storage_options = storage_options or None
        self.props = {ledger.RUN: run_id, ledger.SOURCE: source, ledger.FLOOR: str(floor)}
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.pending_progress: prog.Progress = {}
        self.pending_deletes: dict[int, list[str]] = {}  # old fragment id -> ids whose rows go
        self.committed_rows = 0
        self.committed_source_rows = 0  # source rows these commits recorded as done

    def add(self, fragments: list[Any], rows: int, progress: prog.Progress,
            deletes: dict[int, list[str]] | None = None) -> None:
        self.pending.extend(fragments)
        self.pending_rows += rows
        self.pending_progress = prog.merge_progress(self.pending_progress, progress)
        for frag, ids in (deletes or {}).items():
            self.pending_deletes.setdefault(int(frag), []).extend(ids)

    def record_provenance(self, provenance: dict[str, Any]) -> None:
        """Replace the table's recorded provenance (engine dtypes, model revision) in a commit of this run
        (its ledger properties, no progress), so a resumed or later run's ledger reads on through it."""
        import lance

        op = lance.LanceOperation.UpdateConfig(schema_metadata_updates=lance.LanceOperation.UpdateMap(
            {METADATA_KEY.decode(): json.dumps(provenance, sort_keys=True)}))
        props = {**self.props, ledger.PROGRESS: prog.dumps({})}
        tx = lance.Transaction(read_version=self.version, operation=op, transaction_properties=props)
        self.version = lance.LanceDataset.commit(self.uri, tx, storage_options=self.storage_options).version

    def stage(self) -> int:
        """The run's whole Overwrite as a detached version (readers keep seeing the current one): the candidate a
        gate judges. Publishing commits the same fragments again as the table's next version; nothing is copied."""
        import lance

        assert self.replace and self.version is None, "only a rebuild (overwrite) is staged"
        if self.base_version == 0:
            # Lance cannot create a dataset by a detached commit: a first rebuild starts from an empty table
            # (no rows, no run of ours in its ledger), which is what readers see until the gate passes.
            self.base_version = lance.LanceDataset.commit(self.uri, lance.LanceOperation.Overwrite(self.schema, []),
                                                          storage_options=self.storage_options).version
        op = lance.LanceOperation.Overwrite(self.schema, self.pending)
        props = {**self.props, ledger.PROGRESS: prog.dumps(self.pending_progress), ledger.STATE: "candidate"}
        tx = lance.Transaction(read_version=self.base_version, operation=op, transaction_properties=props)
        return lance.LanceDataset.commit(self.uri, tx, storage_options=self.storage_options, detached=True).version

    def commit(self, complete: bool = False) -> None:
        import lance

        needs_create = self.replace and self.version is None
        if not self.pending and not self.pending_deletes and not complete and not needs_create:
            return
        if needs_create:
            op = lance.LanceOperation.Overwrite(self.schema, self.pending)
            read_version = self.base_version
        elif self.pending_deletes:
            # New vectors and the deletion of the rows they replace in one atomic commit.
            ds = lance.dataset(self.uri, version=self.version, storage_options=self.storage_options)
            removed, updated = delete_ids(ds, self.pending_deletes)
            op = lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated,
                                             new_fragments=self.pending)
            read_version = self.version
        else:
            op = lance.LanceOperation.Append(self.pending)
            read_version = self.version
        props = {**self.props, ledger.PROGRESS: prog.dumps(self.pending_progress)}
        if complete:
            props[ledger.STATE] = "complete"
        tx = lance.Transaction(read_version=read_version, operation=op, transaction_properties=props)
        ds = lance.LanceDataset.commit(self.uri, tx, storage_options=self.storage_options)
        self.version = ds.version
        self.committed_rows += self.pending_rows
        self.committed_source_rows += prog.total_rows(self.pending_progress)
        self.pending, self.pending_rows, self.pending_progress, self.pending_deletes = [], 0, {}, {}


class LanceCommitter:
    """Collects writer reports on the driver and commits both tables.

    `overwrite` mode holds everything for one final Overwrite commit, so the
    previous table stays the current version until the new one is complete.
    """

    def __init__(self, main: TableCommits, rejected: TableCommits, *, mode: str, commit_every_rows: int,
                 commit_every_seconds: float, on_commit: Any = None, before_commit: Any = None):
        self.main = main
        self.rejected = rejected
        self.mode = mode
        self.every_rows = commit_every_rows
        self.every_seconds = commit_every_seconds
        self.on_commit = on_commit
        self.before_commit = before_commit  # fencing: raises when the table's lease is no longer ours
        self._last_commit = time.monotonic()
        self.tokens = 0
        self.reasons: Counter[str] = Counter()  # rejected rows by reason
        self.actions: Counter[str] = Counter()  # new / changed / unchanged rows
        self.deleted = 0
        self.commits = 0
        self.commit_seconds: list[float] = []  # each commit's duration: does committing slow down as the table grows?
        self.unchanged_source_rows = 0  # rows the table already holds: reported, nothing to commit

    @classmethod
    def for_run(cls, spec: SinkSpec, *, mode: str, main_version: int | None, rejected_version: int | None,
                resuming: bool, run_id: str, source: str, floor: int, **kwargs: Any) -> LanceCommitter:
        """`*_version`: the table's current version, None if it does not exist."""

        def table(uri: str, schema: pa.Schema, version: int | None) -> TableCommits:
            replace = mode == "overwrite" or version is None or (mode == "create" and not resuming)
            return TableCommits(uri, schema, replace=replace, base_version=version or 0, run_id=run_id,
                                source=source, floor=floor, storage_options=spec.storage_options)

        return cls(table(spec.main_uri, spec.schema, main_version),
                   table(spec.rejected_uri, spec.rejected_schema, rejected_version), mode=mode, **kwargs)

    def add(self, row: dict[str, Any]) -> None:
        from lance.fragment import FragmentMetadata

        counts = json.loads(row["counts"])
        if row["table"] == "unchanged":
            self.actions.update(counts)
            self.unchanged_source_rows += row["rows"]
            return
        target = self.main if row["table"] == "main" else self.rejected
        frags = [FragmentMetadata.from_json(json.dumps(f)) for f in json.loads(row["fragments"])]
        deletes = {int(k): v for k, v in json.loads(row["replaces"]).items()}
        target.add(frags, row["rows"], prog.loads(row["progress"]), deletes)
        self.tokens += row["tokens"]
        (self.actions if target is self.main else self.reasons).update(counts)

    def maybe_commit(self) -> bool:
        if self.mode == "overwrite":
            return False
        pending = self.main.pending_rows + self.rejected.pending_rows
        due = time.monotonic() - self._last_commit >= self.every_seconds
        if pending and (pending >= self.every_rows or due):
            self._commit(complete=False)
            return True
        return False

    def stage(self) -> int:
        """overwrite with a gate: the rebuilt table as a detached version of the vector table (its number);
        `finish` publishes it, or nothing does and the current version stays."""
        assert self.mode == "overwrite"
        faults.point("before_stage")
        return self.main.stage()

    def finish(self, deletes: dict[int, list[str]] | None = None) -> None:
        """Last commit, marked complete; `deletes` (sync's rows gone from the source) go in it atomically."""
        for ids in (deletes or {}).values():
            self.deleted += len(ids)
        self.main.add([], 0, {}, deletes)
        self._commit(complete=True)

    def _commit(self, complete: bool) -> None:
        started = time.monotonic()
        if self.before_commit is not None:
            self.before_commit()
        self.commits += 1
        faults.point("before_commit")
        self.rejected.commit(complete)
        faults.point("mid_commit")
        self.main.commit(complete)
        faults.point("after_commit")
        self._last_commit = time.monotonic()
        self.commit_seconds.append(round(self._last_commit - started, 3))
        if self.on_commit is not None:
            self.on_commit()

    def source_rows_accounted(self) -> int:
        """Source rows this attempt's commits made visible, plus those its pending commit holds."""
        return sum(t.committed_source_rows + prog.total_rows(t.pending_progress) for t in (self.main, self.rejected))

    @property
    def rows_written(self) -> int:
        return self.main.committed_rows

    @property
    def rows_rejected(self) -> int:
        return self.rejected.committed_rows
