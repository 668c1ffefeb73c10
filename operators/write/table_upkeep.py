"""Upkeep of a vector table that is rewritten every night: compaction, indexes, old versions, recall.

Order matters: compact first (so indexes are built over few, large fragments),
then build or refresh the indexes (a new vector index when there is none or its
parameters are asked to change; otherwise new rows are added to it), then drop
old versions beyond the retention window, and last check a sample of searches
against exact search. A table with an unfinished (resumable) run is left
alone entirely: compaction renumbers fragments, cleanup drops the transactions
the resume reads, and any commit on top (even an index) hides the run's ledger.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

# Index statistics list every IVF centroid unless told not to (megabytes on a big index).
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

VECTOR_INDEX = "vector_idx"
# IVF with 8-bit scalar quantisation: LanceDB's default search (20 partitions probed, no refine) finds
# 0.95-0.97 of the exact top 10 at 20k-1M rows, where IVF_PQ found 0.40-0.45 (docs/benchmark.md).
DEFAULT_INDEX = "IVF_SQ"


@dataclass(frozen=True)
class UpkeepSettings:
    vector_index: str = "auto"  # auto (DEFAULT_INDEX) | IVF_SQ | IVF_PQ | IVF_HNSW_SQ | none
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    index_min_rows: int = 10_000  # smaller tables are searched exactly, fast enough
    id_index: bool = True
    fts_column: str | None = None
    compact: bool = True
    target_rows_per_fragment: int = 1_048_576
    keep_versions: int = 20
    keep_days: float = 7.0
    recall_queries: int = 50
    retrain_share: float = 0.2  # retrain once this share of rows is outside the trained index
    max_index_deltas: int = 8  # ... or once new rows sit in more delta indices than this


@dataclass
class UpkeepReport:
    rows: int = 0
    fragments_before: int = 0
    fragments_after: int = 0
    versions_before: int = 0
    versions_after: int = 0
    vector_index: str | None = None  # its type, if the table has one
    vector_index_action: str | None = None  # built / retrained / rows added as a delta / up to date, and why
    unindexed_rows: int | None = None
    indexes: list[str] = field(default_factory=list)
    recall_at_10: float | None = None  # ANN against exact search on sampled stored vectors
    search_uses_index: bool | None = None
    skipped: list[str] = field(default_factory=list)  # steps not done, and why
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        recall = "n/a" if self.recall_at_10 is None else f"{self.recall_at_10:.3f}"
        lines = [
            "── batch-embed upkeep ───────────────────────────────",
            f"rows           {self.rows:,}",
            f"fragments      {self.fragments_before:,} -> {self.fragments_after:,}",
            f"versions       {self.versions_before:,} -> {self.versions_after:,}",
            f"indexes        {', '.join(self.indexes) or 'none'}"
            + (f"  (vector: {self.vector_index}, {self.unindexed_rows:,} rows not indexed)"
               if self.vector_index else ""),
            *([f"vector index   {self.vector_index_action}"] if self.vector_index_action else []),
            f"search         recall@10 of LanceDB's default search vs exact {recall}  uses index: "
            f"{self.search_uses_index}",
            f"time           {self.seconds:.1f} s",
        ]
        lines += [f"skipped        {s}" for s in self.skipped]
        return "\n".join(lines)


def index_params(rows: int, dims: int, kind: str, num_partitions: int | None = None,
                 num_sub_vectors: int | None = None) -> dict[str, Any]:
    """IVF parameters from the table's size: ~sqrt(rows) partitions (at least ~256 rows each, at most
    4096); for IVF_PQ, 8-dimension sub-vectors where the width allows (16 for wide vectors)."""
    parts = num_partitions or int(min(4096, max(1, min(math.sqrt(rows), rows / 256))))
    params: dict[str, Any] = {"index_type": kind, "num_partitions": max(1, parts), "metric": "cosine"}
    if kind == "IVF_PQ":
        if num_sub_vectors is None:
            per = 16 if dims >= 1024 else 8
            num_sub_vectors = max(1, dims // per)
            while dims % num_sub_vectors:
                num_sub_vectors -= 1
        params["num_sub_vectors"] = num_sub_vectors
    return params


def retrain_reason(ds: Any, settings: UpkeepSettings, kind: str) -> str | None:
    """Why the vector index must be trained again, or None: its type changed, or too many rows live outside
    the trained segment (added as deltas on old partitions, or not indexed yet), or too many deltas."""
    stats = ds.index_statistics(VECTOR_INDEX)
    if stats.get("index_type") != kind:
        return f"retrained: {stats.get('index_type')} -> {kind}"
    rows = ds.count_rows()
    per_delta = stats.get("num_indexed_rows_per_delta") or [stats.get("num_indexed_rows", 0)]
    outside = rows - int(per_delta[0])  # the first segment is the one trained (later ones are deltas)
    if rows and outside / rows > settings.retrain_share:
        return (f"retrained: {outside / rows:.0%} of rows outside the trained index "
                f"(upkeep.retrain_share {settings.retrain_share:.0%})")
    if len(per_delta) - 1 >= settings.max_index_deltas:
        return f"retrained: {len(per_delta) - 1} delta indices (upkeep.max_index_deltas {settings.max_index_deltas})"
    return None


def _unfinished_run(ds: Any) -> str | None:
    from operators.write.run_ledger import read_ledger

    ledger = read_ledger(ds)
    return ledger.run_id if ledger is not None and not ledger.complete else None


def lancedb_table(uri: str, storage_options: dict[str, str] | None) -> Any:
    """The LanceDB table of a `<db>/<name>.lance` dataset uri, as a reader opens it."""
    import lancedb

    db, _, name = uri.rstrip("/").rpartition("/")
    return lancedb.connect(db, storage_options=storage_options or None).open_table(name.removesuffix(".lance"))


def recall_at_10(ds: Any, n: int, table: Any, seed: int = 0) -> tuple[float | None, bool | None]:
    """Mean overlap of ANN and exact top-10 for `n` stored vectors used as queries, the ANN side being
    LanceDB's `table.search(q).limit(10)` with nothing else set (what a reader who never tuned a search
    gets); and whether that search's plan uses the vector index."""
    rows = ds.count_rows()
    if not rows or not n:
        return None, None
    picks = np.random.default_rng(seed).choice(rows, size=min(n, rows), replace=False)
    queries = ds.take(sorted(picks.tolist()), columns=["vector"]).column("vector")
    hits = []
    uses_index = None
    for q in queries.to_pylist():
        q = np.asarray(q, dtype=np.float32)
        exact = {"column": "vector", "q": q, "k": 10, "metric": "cosine", "use_index": False}
        search = table.search(q, vector_column_name="vector").limit(10).select(["id"])
        if uses_index is None:
            uses_index = "ANN" in search.explain_plan()
        got = set(search.to_arrow().column("id").to_pylist())
        want = set(ds.to_table(nearest=exact, columns=["id"]).column("id").to_pylist())
        hits.append(len(got & want) / max(1, len(want)))
    return float(np.mean(hits)), uses_index


def upkeep(uri: str, storage_options: dict[str, str] | None, settings: UpkeepSettings) -> UpkeepReport:
    import lance

    t0 = time.monotonic()
    opts = storage_options or None
    ds = lance.dataset(uri, storage_options=opts)
    report = UpkeepReport(rows=ds.count_rows(), fragments_before=len(ds.get_fragments()),
                          versions_before=len(ds.versions()))
    unfinished = _unfinished_run(ds)
    if unfinished:
        report.skipped.append(f"everything: run {unfinished} is unfinished; re-run it to completion first (it "
                              "resumes from these versions, and a commit on top would hide its progress)")
        report.fragments_after, report.versions_after = report.fragments_before, report.versions_before
        report.seconds = time.monotonic() - t0
        return report
    if settings.compact and report.fragments_before > 1:
        ds.optimize.compact_files(target_rows_per_fragment=settings.target_rows_per_fragment,
                                  materialize_deletions=True)
        ds = lance.dataset(uri, storage_options=opts)

    have = {i["name"]: i for i in ds.list_indices()}
    kind = DEFAULT_INDEX if settings.vector_index == "auto" else settings.vector_index
    if kind != "none" and report.rows >= settings.index_min_rows:
        dims = ds.schema.field("vector").type.list_size
        params = index_params(report.rows, dims, kind, settings.num_partitions, settings.num_sub_vectors)
        why = retrain_reason(ds, settings, kind) if VECTOR_INDEX in have else "built"
        if VECTOR_INDEX not in have or settings.num_partitions or settings.num_sub_vectors or why:
            ds.create_index("vector", name=VECTOR_INDEX, replace=True, **params)
            report.vector_index_action = why or "rebuilt with the parameters given"
            ds = lance.dataset(uri, storage_options=opts)
    elif kind != "none":
        report.skipped.append(f"vector index: {report.rows:,} rows < index_min_rows ({settings.index_min_rows:,}); "
                              "exact search is fast enough")
    if settings.id_index and "id" in ds.schema.names and "id_idx" not in have:
        ds.create_scalar_index("id", "BTREE", name="id_idx")
    if settings.fts_column and f"{settings.fts_column}_fts" not in have:
        ds.create_scalar_index(settings.fts_column, "INVERTED", name=f"{settings.fts_column}_fts")
    ds = lance.dataset(uri, storage_options=opts)
    names = {i["name"] for i in ds.list_indices()}
    if VECTOR_INDEX in names and (new := ds.index_statistics(VECTOR_INDEX).get("num_unindexed_rows", 0)):
        # Rows added since the index was trained join it as a delta on the trained partitions (Lance's
        # default merge re-encodes the index and dropped recall@10 from 0.88 to 0.38 in pylance 14.0.2);
        # `retrain_reason` decides when the deltas have drifted far enough to train again.
        ds.optimize.optimize_indices(index_names=[VECTOR_INDEX], num_indices_to_merge=0)
        report.vector_index_action = report.vector_index_action or f"{new:,} new rows added as a delta index"
    scalar = sorted(names - {VECTOR_INDEX})
    if scalar:
        ds.optimize.optimize_indices(index_names=scalar)
    ds = lance.dataset(uri, storage_options=opts)

    ds.cleanup_old_versions(older_than=timedelta(days=settings.keep_days), retain_versions=settings.keep_versions)
    ds = lance.dataset(uri, storage_options=opts)
    report.fragments_after = len(ds.get_fragments())
    report.versions_after = len(ds.versions())
    report.indexes = sorted(i["name"] for i in ds.list_indices())
    if VECTOR_INDEX in report.indexes:
        stats = ds.index_statistics(VECTOR_INDEX)
        report.vector_index = next(i["type"] for i in ds.list_indices() if i["name"] == VECTOR_INDEX)
        report.unindexed_rows = int(stats.get("num_unindexed_rows", 0))
        report.recall_at_10, report.search_uses_index = recall_at_10(ds, settings.recall_queries,
                                                                     lancedb_table(uri, opts))
    report.seconds = time.monotonic() - t0
    return report
