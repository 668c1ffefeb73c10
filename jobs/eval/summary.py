"""The evaluation's result: metrics per Matryoshka size (and after reranking), one screen and one JSON.

The JSON is a contract scripts read: lowercase metric keys (`ndcg@10`, `recall@100`...)
at the top level for the first size evaluated (the largest), every size under `dims`
with its storage cost, and the reranked figures under `reranked`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.core.summary import JobSummary, render_counts, render_time_split


@dataclass
class EvalSummary(JobSummary):
    table: str
    table_uri: str
    table_version: int
    model: str
    instruction: str
    stored_dims: int
    metrics: list[str]
    by_dims: dict[int, dict[str, float]]  # size -> metric -> mean
    bytes_per_row: dict[int, int]  # size -> bytes of one stored vector at that size
    queries_read: int
    queries_evaluated: int  # judged queries with a ranking
    queries_unjudged: int  # read but without a relevant judgement: not evaluated
    judged_queries_missing: int  # judged in the qrels, absent from the queries file: not evaluated
    queries_rejected: dict[str, int]  # reason -> judged queries that got no ranking (they score 0)
    judgements: int
    judgements_duplicated: int
    judged_docs_missing: int
    tokens: int
    seconds: float
    reranked: dict[str, float] | None = None
    rerank: dict[str, Any] | None = None  # model, top_k, dims the candidates came from
    time_split: dict[str, Any] | None = None  # engines' start-up, busy and waiting seconds (engine_clock.py)
    compare: dict[str, Any] | None = None  # the `compare:` table's metrics per size and this table's lead (job.py)
    summary_path: str | None = None
    report_path: str | None = None
    kind: str = field(default="eval")

    def to_dict(self) -> dict[str, Any]:
        first = self.by_dims[max(self.by_dims)]
        d: dict[str, Any] = {k: round(v, 6) for k, v in first.items()}
        d["dims"] = {str(dim): {**{k: round(v, 6) for k, v in m.items()}, "bytes_per_row": self.bytes_per_row[dim]}
                     for dim, m in sorted(self.by_dims.items(), reverse=True)}
        if self.reranked is not None:
            d["reranked"] = {k: round(v, 6) for k, v in self.reranked.items()}
            d["rerank"] = self.rerank
        d.update(
            kind=self.kind, table=self.table, table_uri=self.table_uri, table_version=self.table_version,
            model=self.model, instruction=self.instruction, stored_dims=self.stored_dims, metrics=self.metrics,
            queries_read=self.queries_read, queries_evaluated=self.queries_evaluated,
            queries_unjudged=self.queries_unjudged, judged_queries_missing=self.judged_queries_missing,
            queries_rejected=self.queries_rejected, judgements=self.judgements,
            judgements_duplicated=self.judgements_duplicated, judged_docs_missing=self.judged_docs_missing,
            tokens=self.tokens, seconds=round(self.seconds, 3), time_split=self.time_split,
            summary_path=self.summary_path, report_path=self.report_path, compare=self.compare,
        )
        return d

    def render(self) -> str:
        head = f"{'dims':>6} {'bytes/row':>10} " + " ".join(f"{m:>11}" for m in self.metrics)
        rows = [f"{dim:>6} {self.bytes_per_row[dim]:>10,} " + " ".join(f"{v[m]:>11.4f}" for m in self.metrics)
                for dim, v in sorted(self.by_dims.items(), reverse=True)]
        if self.reranked is not None and self.rerank is not None:
            rows.append(f"{'rerank':>6} {'top ' + str(self.rerank['top_k']):>10} "
                        + " ".join(f"{self.reranked[m]:>11.4f}" for m in self.metrics))
        rejected = render_counts(self.queries_rejected)
        lines = [
            "── batch-embed eval summary ─────────────────────────",
            f"table          {self.table}  (version {self.table_version})  {self.table_uri}",
            f"model          {self.model}  stored dims={self.stored_dims}",
            f"queries        read {self.queries_read:,}  evaluated {self.queries_evaluated:,}  without judgements "
            f"{self.queries_unjudged:,}  judged but not in the queries file {self.judged_queries_missing:,}",
            f"rejected       {rejected}",
            f"judgements     {self.judgements:,}  relevant documents not in the table {self.judged_docs_missing:,}"
            + (f"  duplicated (highest kept) {self.judgements_duplicated:,}" if self.judgements_duplicated else ""),
            head,
            *rows,
            *self.compare_lines(),
            f"time           {self.seconds:.1f} s   {self.tokens:,} tokens",
            *render_time_split(self.time_split),
        ]
        lines += self.path_lines()
        return "\n".join(lines)

    def compare_lines(self) -> list[str]:
        """The `compare:` table's rows under this table's, and this table's lead over it."""
        c = self.compare
        if not c:
            return []
        lines = [f"compared with  {c['table']}  (version {c['table_version']})  {c['model']}"]
        for dim, values in c["dims"].items():
            lines.append(f"{dim:>6} {'':>10} " + " ".join(f"{values[m]:>11.4f}" for m in self.metrics))
            lines.append(f"{'lead':>6} {'':>10} " + " ".join(f"{c['delta'][dim][m]:>+11.4f}" for m in self.metrics))
        return lines
