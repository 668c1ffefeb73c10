"""The embedding job's end-of-run summary: one screen for people, one JSON file for scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.core.adapters import model_label
from jobs.core.paths import rejected_table
from jobs.core.summary import JobSummary, actors_report, render_actors, render_counts, render_time_split
from jobs.embed.gate import GateVerdict


@dataclass
class RunSummary(JobSummary):
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
    rows_columns_updated: int  # same vector (bytes copied, not re-embedded), copied source columns rewritten
    rows_deleted: int  # removed: id no longer in the source (sync.delete_missing)
    rejected_by_reason: dict[str, int]
    tokens: int
    seconds: float
    commits: int
    run_id: str = ""
    orphans_removed: int = 0  # uncommitted files of killed attempts / retried tasks, deleted at the end
    actors: dict[str, Any] = field(default_factory=dict)
    summary_path: str | None = None
    adapter: str | None = None  # content hash of model.adapter
    rerank: Any = None  # the RerankSummary of the config's `rerank:` section, when it has one
    upkeep: Any = None  # the UpkeepReport, when upkeep ran after the commit
    bad_shards: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped (on_bad_shard: skip)
    deletes_skipped: str | None = None  # why sync.delete_missing did not delete this run
    abandoned_run: str | None = None  # a killed sync night over another listing, whose progress this run dropped
    engine_dtype: str | None = None  # what every engine of the run computed in (recorded in the table)
    dtype_note: str | None = None  # the table also holds vectors of another dtype
    throughput: list[list[float]] | None = None  # [[seconds, source rows done, tokens], ...] for the report
    time_split: dict[str, Any] | None = None  # start-up, engines busy / waiting, writing, committing
    report_path: str | None = None
    gate: dict[str, Any] | None = None  # the gate's verdict (jobs/embed/gate.py GateVerdict), when the config has one

    @property
    def rows_per_s(self) -> float:
        return self.per_second(self.rows_written)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 2)
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        d["seconds"] = round(self.seconds, 3)
        d["kind"] = "embed"
        return d

    def render(self) -> str:
        reasons = render_counts(self.rejected_by_reason)
        lines = [
            "── batch-embed summary ──────────────────────────────",
            f"table          {self.table}  (version {self.table_version})  {self.table_uri}",
            f"model          {model_label(self.model, self.adapter)}  dims={self.dimensions}  mode={self.mode}  "
            f"dtype={self.engine_dtype}",
            f"rows           read {self.rows_read:,} from {self.shards} shard(s)  written {self.rows_written:,}  "
            f"rejected {self.rows_rejected:,}"
            + (f"  (+{self.rows_resumed:,} committed before a restart)" if self.rows_resumed else ""),
            f"sync           new {self.rows_new:,}  changed {self.rows_changed:,}  columns updated "
            f"{self.rows_columns_updated:,}  unchanged (skipped) {self.rows_unchanged:,}  deleted {self.rows_deleted:,}"
            + (f"  (no deletes: {self.deletes_skipped})" if self.deletes_skipped else ""),
            f"rejected       {reasons}  -> {self.rejected_table} (version {self.rejected_version})",
            f"tokens         {self.tokens:,}",
            f"time           {self.seconds:.1f} s   {self.rows_per_s:,.1f} rows/s   {self.tokens_per_s:,.0f} tokens/s",
            f"commits        {self.commits}",
            render_actors(self.actors),
            *render_time_split(self.time_split),
        ]
        if self.dtype_note:
            lines.append(f"DTYPES         {self.dtype_note}")
        if self.abandoned_run:
            lines.append(f"ABANDONED RUN  {self.abandoned_run} (killed over another source listing; this sync "
                         "kept what it committed)")
        for path, why in sorted(self.bad_shards.items()):
            lines.append(f"SKIPPED SHARD  {path}: {why}")
        if self.gate is not None:
            lines.append(GateVerdict(**self.gate).render())
        lines += self.path_lines()
        if self.upkeep is not None:
            lines.append(self.upkeep.render())
        if self.rerank is not None:
            lines.append(self.rerank.render())
        return "\n".join(lines)


def summarize(plan: Any, run: Any, gpus: float, upkeep: Any, deletes_skipped: str | None) -> RunSummary:
    """The summary of a finished run: `plan` an EmbedPlan, `run` its finished CommittedRun."""
    cfg, c = plan.config, run.committer
    return RunSummary(
        table=cfg.sink.table,
        table_uri=plan.target.sink.main_uri,
        table_version=c.main.version,
        rejected_table=rejected_table(cfg.sink.table),
        rejected_version=c.rejected.version,
        model=cfg.model.name,
        adapter=plan.adapter.content_hash if plan.adapter else None,
        dimensions=plan.dimensions,
        mode=cfg.sink.mode.value,
        shards=len(plan.shards),
        rows_read=plan.total_rows,
        rows_written=c.rows_written,
        rows_rejected=c.rows_rejected,
        rows_resumed=plan.rows_done,
        rows_new=c.actions["new"],
        rows_changed=c.actions["changed"],
        rows_unchanged=c.actions["unchanged"],
        rows_columns_updated=c.actions["columns"],
        rows_deleted=c.deleted,
        rejected_by_reason=dict(c.reasons),
        tokens=c.tokens,
        seconds=run.seconds,
        commits=c.commits,
        run_id=plan.target.run_id,
        orphans_removed=run.orphans_removed,
        actors=actors_report(cfg.engine, gpus, run.actor_timeline),
        throughput=run.throughput, time_split=run.time_split,
        upkeep=upkeep,
        bad_shards={b.path: b.reason for b in plan.bad_shards},
        deletes_skipped=deletes_skipped,
        abandoned_run=plan.target.abandoned_run,
    )
