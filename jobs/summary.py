"""The end-of-run summary: one screen for people, one JSON file for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    table: str
    table_uri: str
    table_version: int | None
    rejected_table: str
    rejected_version: int | None
    model: str
    dimensions: int
    mode: str
    shards: int
    rows_read: int
    rows_written: int
    rows_rejected: int
    rows_resumed: int  # committed by earlier, killed attempts of this run
    rows_new: int  # embedded, id not in the table before
    rows_changed: int  # embedded, replacing a vector whose fingerprint changed
    rows_unchanged: int  # skipped: the table already holds this vector (sync mode)
    rows_deleted: int  # removed: id no longer in the source (sync.delete_missing)
    rejected_by_reason: dict[str, int]
    tokens: int
    seconds: float
    commits: int
    run_id: str = ""
    orphans_removed: int = 0  # uncommitted files of killed attempts / retried tasks, deleted at the end
    actors: dict[str, Any] = field(default_factory=dict)
    summary_path: str | None = None
    rerank: Any = None  # the RerankSummary of the config's `rerank:` section, when it has one
    upkeep: Any = None  # the UpkeepReport, when upkeep ran after the commit
    bad_shards: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped (on_bad_shard: skip)
    deletes_skipped: str | None = None  # why sync.delete_missing did not delete this run
    throughput: list[list[float]] | None = None  # [[seconds, source rows done, tokens], ...] for the report
    report_path: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows_written / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 2)
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        d["seconds"] = round(self.seconds, 3)
        d["kind"] = "embed"
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def render(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected_by_reason.items())) or "none"
        lines = [
            "── batch-embed summary ──────────────────────────────",
            f"table          {self.table}  (version {self.table_version})  {self.table_uri}",
            f"model          {self.model}  dims={self.dimensions}  mode={self.mode}",
            f"rows           read {self.rows_read:,} from {self.shards} shard(s)  written {self.rows_written:,}  "
            f"rejected {self.rows_rejected:,}"
            + (f"  (+{self.rows_resumed:,} committed before a restart)" if self.rows_resumed else ""),
            f"sync           new {self.rows_new:,}  changed {self.rows_changed:,}  unchanged (skipped) "
            f"{self.rows_unchanged:,}  deleted {self.rows_deleted:,}"
            + (f"  (no deletes: {self.deletes_skipped})" if self.deletes_skipped else ""),
            f"rejected       {reasons}  -> {self.rejected_table} (version {self.rejected_version})",
            f"tokens         {self.tokens:,}",
            f"time           {self.seconds:.1f} s   {self.rows_per_s:,.1f} rows/s   {self.tokens_per_s:,.0f} tokens/s",
            f"commits        {self.commits}",
            render_actors(self.actors),
        ]
        for path, why in sorted(self.bad_shards.items()):
            lines.append(f"SKIPPED SHARD  {path}: {why}")
        if self.summary_path:
            lines.append(f"summary        {self.summary_path}")
        if self.report_path:
            lines.append(f"report         {self.report_path}")
        if self.upkeep is not None:
            lines.append(self.upkeep.render())
        if self.rerank is not None:
            lines.append(self.rerank.render())
        return "\n".join(lines)


@dataclass
class RerankSummary:
    table: str
    table_uri: str
    table_version: int | None
    rejected_table: str
    rejected_version: int | None
    model: str
    mode: str
    input: str
    shards: int
    rows_read: int  # source rows: pairs, or queries
    rows_resumed: int
    queries_reranked: int
    queries_skipped: int  # already in the table (append)
    rejected_rows: int  # source rows of queries that could not be reranked at all
    pairs_written: int
    pairs_unscored: int  # written with a reason and no score (empty document, query too long)
    rejected_by_reason: dict[str, int]
    tokens: int
    seconds: float
    commits: int
    run_id: str = ""
    orphans_removed: int = 0
    actors: dict[str, Any] = field(default_factory=dict)
    summary_path: str | None = None
    throughput: list[list[float]] | None = None
    report_path: str | None = None

    @property
    def pairs_per_s(self) -> float:
        return self.pairs_written / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(pairs_per_s=round(self.pairs_per_s, 2), tokens_per_s=round(self.tokens_per_s, 2),
                 seconds=round(self.seconds, 3), kind="rerank")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def render(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected_by_reason.items())) or "none"
        lines = [
            "── batch-embed rerank summary ───────────────────────",
            f"table          {self.table}  (version {self.table_version})  {self.table_uri}",
            f"model          {self.model}  mode={self.mode}",
            f"input          {self.input}: {self.rows_read:,} rows from {self.shards} shard(s)"
            + (f"  (+{self.rows_resumed:,} committed before a restart)" if self.rows_resumed else ""),
            f"queries        reranked {self.queries_reranked:,}  skipped (already in the table) "
            f"{self.queries_skipped:,}",
            f"pairs          written {self.pairs_written:,}  unscored {self.pairs_unscored:,}",
            f"rejected       {reasons}  -> {self.rejected_table} (version {self.rejected_version})",
            f"tokens         {self.tokens:,}",
            f"time           {self.seconds:.1f} s   {self.pairs_per_s:,.1f} pairs/s   "
            f"{self.tokens_per_s:,.0f} tokens/s",
            f"commits        {self.commits}",
            render_actors(self.actors),
        ]
        if self.summary_path:
            lines.append(f"summary        {self.summary_path}")
        if self.report_path:
            lines.append(f"report         {self.report_path}")
        return "\n".join(lines)


def actors_report(engine: Any, gpus: float, timeline: dict[str, list[list[float]]] | None) -> dict[str, Any]:
    """The summary's `actors`: the pool's configured size and how many were alive over the run."""
    return {"min": engine.actors.min, "max": engine.actors.max, "gpus_per_actor": gpus, "timeline": timeline}


def render_actors(actors: dict[str, Any]) -> str:
    """`actors  Embedder 0@1s->1@14s->0@47.1s (peak 1 of max 2)`: how each engine pool scaled over the run."""
    pools = []
    for pool, series in sorted((actors.get("timeline") or {}).items()):
        steps = "->".join(f"{int(n)}@{t:g}s" for t, n in series) or "not seen"
        peak = max((int(n) for _, n in series), default=0)
        pools.append(f"{pool} {steps} (peak {peak} of max {actors.get('max')})")
    return "actors         " + ("; ".join(pools) or f"min {actors.get('min')} max {actors.get('max')}")


def write_summary(summary: Any, path: str, storage_options: dict[str, Any]) -> None:
    """Write the JSON (local folder or object store) and the HTML report next to it.

    `summary`: a RunSummary, RerankSummary or EvalSummary. Both files come from the redacted JSON."""
    import fsspec

    from jobs.redaction import redact
    from jobs.report import render_report, report_path_for

    summary.summary_path = path
    summary.report_path = report_path_for(path)
    text = redact(summary.to_json())
    with fsspec.open(path, "w", **storage_options) as f:
        f.write(text)
    with fsspec.open(summary.report_path, "w", **storage_options) as f:
        f.write(render_report(json.loads(text)))
