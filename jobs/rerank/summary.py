"""The reranking job's end-of-run summary: one screen for people, one JSON file for scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.core.adapters import model_label
from jobs.core.paths import rejected_table
from jobs.core.summary import JobSummary, actors_report, render_actors, render_counts, render_time_split


@dataclass
class RerankSummary(JobSummary):
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
    adapter: str | None = None  # content hash of model.adapter
    throughput: list[list[float]] | None = None
    time_split: dict[str, Any] | None = None  # start-up, engines busy / waiting, writing, committing
    report_path: str | None = None

    @property
    def pairs_per_s(self) -> float:
        return self.per_second(self.pairs_written)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(pairs_per_s=round(self.pairs_per_s, 2), tokens_per_s=round(self.tokens_per_s, 2),
                 seconds=round(self.seconds, 3), kind="rerank")
        return d

    def render(self) -> str:
        reasons = render_counts(self.rejected_by_reason)
        lines = [
            "── batch-embed rerank summary ───────────────────────",
            f"table          {self.table}  (version {self.table_version})  {self.table_uri}",
            f"model          {model_label(self.model, self.adapter)}  mode={self.mode}",
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
            *render_time_split(self.time_split),
        ]
        lines += self.path_lines()
        return "\n".join(lines)


def summarize(plan: Any, run: Any, gpus: float) -> RerankSummary:
    """The summary of a finished run: `plan` a RerankPlan, `run` its finished CommittedRun."""
    cfg, c = plan.config, run.committer
    if plan.pair_columns is not None:
        source = "pairs"
    else:
        source = f"queries + top {plan.retrieval.top_k} of {plan.retrieval.uri} (version {plan.retrieval.version})"
    return RerankSummary(
        table=cfg.sink.table, table_uri=plan.target.sink.main_uri, table_version=c.main.version,
        rejected_table=rejected_table(cfg.sink.table), rejected_version=c.rejected.version,
        model=cfg.model.name, adapter=plan.reranker.adapter_hash, mode=cfg.sink.mode.value, input=source,
        shards=len(plan.shards), rows_read=plan.total_rows, rows_resumed=plan.rows_done,
        queries_reranked=c.actions["queries"], queries_skipped=c.actions["skipped_queries"],
        rejected_rows=c.rows_rejected, pairs_written=c.rows_written, pairs_unscored=c.actions["unscored_pairs"],
        rejected_by_reason=dict(c.reasons), tokens=c.tokens, seconds=run.seconds, commits=c.commits,
        run_id=plan.target.run_id, orphans_removed=run.orphans_removed,
        actors=actors_report(cfg.engine, gpus, run.actor_timeline), throughput=run.throughput,
        time_split=run.time_split,
    )
