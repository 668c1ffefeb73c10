"""What every job's summary shares: the engine pools over the run, and writing the JSON with its HTML report."""

from __future__ import annotations

import json
from typing import Any


class JobSummary:
    """What every job's summary dataclass shares: rates, its JSON form, and where it was written."""

    seconds: float
    tokens: int
    summary_path: str | None
    report_path: str | None

    def per_second(self, count: float) -> float:
        return count / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.per_second(self.tokens)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def path_lines(self) -> list[str]:
        """The summary's closing lines: where the JSON and the HTML report went."""
        return ([f"summary        {self.summary_path}"] if self.summary_path else []) + (
            [f"report         {self.report_path}"] if self.report_path else [])


def render_counts(counts: dict[str, int]) -> str:
    """`empty_text=2, null_id=1`, sorted by name; `none` when there are none (rejected, skipped rows)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


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


def render_time_split(split: dict[str, Any] | None) -> list[str]:
    """Where the run's time went (operators/infer/engine_clock.py): were the engines starved or the bottleneck?"""
    if not split or not split.get("engines"):
        return []
    engines = split["engines"]
    shares = ", ".join(f"{e['busy_share']:.0%}" for e in engines.values())
    share = split.get("busy_share") or 0.0
    verdict = ("engines are the limit: add engines" if share >= 0.9 else
               "engines waited for input: the CPUs around them (read, validate, tokenise, write) are the limit"
               if share < 0.7 else "engines mostly busy")
    # eval and mine write no table: their split has no writing or committing to show
    writes = (f"  writing {split['write_s']:.1f} s (tasks)  committing {split['commit_s']:.1f} s (driver)"
              if split.get("writes") or split.get("commit_s") else "")
    return [
        f"time split     first engine up at {split['first_engine_up_s']:.1f} s of {split['wall_s']:.1f} s "
        f"(start-up {split['engine_startup_s']:.1f} s)  engines busy {split['engines_busy_s']:.1f} s, "
        f"waiting for input {split['engines_waiting_s']:.1f} s" + writes,
        f"engines busy   {share:.0%} overall ({verdict}); per engine: {shares}",
    ]


def write_summary(summary: Any, path: str, storage_options: dict[str, Any]) -> None:
    """Write the JSON (local folder or object store) and the HTML report next to it.

    `summary`: a RunSummary, RerankSummary or EvalSummary. Both files come from the redacted JSON."""
    import fsspec

    from jobs.core.paths import report_path
    from jobs.core.redaction import redact
    from jobs.core.report.html import render_report

    summary.summary_path = path
    summary.report_path = report_path(path)
    text = redact(summary.to_json())
    with fsspec.open(path, "w", **storage_options) as f:
        f.write(text)
    with fsspec.open(summary.report_path, "w", **storage_options) as f:
        f.write(render_report(json.loads(text)))
