"""The mining job's end-of-run summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.summary import render_counts, render_time_split


@dataclass
class MineSummary:
    pairs_read: int
    pairs_written: int
    negatives: int
    short_of_negatives: int  # written with fewer than num_negatives
    skipped: dict[str, int]  # bad rows and rows without any negative, by reason
    first_skipped: list[str]  # where, for the first few
    mean_positive_score: float
    mean_negative_score: float
    scorer: str
    output: str
    seconds: float
    time_split: dict[str, Any] | None = None  # engines' start-up, busy and waiting seconds (engine_clock.py)

    def render(self) -> str:
        skipped = render_counts(self.skipped)
        return "\n".join([
            "── batch-embed mine summary ─────────────────────────",
            f"pairs          read {self.pairs_read:,}  written {self.pairs_written:,}  "
            f"with fewer negatives than asked {self.short_of_negatives:,}",
            f"negatives      {self.negatives:,}",
            f"skipped        {skipped}" + (f"  (first: {'; '.join(self.first_skipped)})" if self.first_skipped else ""),
            f"similarity     query-positive {self.mean_positive_score:.4f}  query-negative "
            f"{self.mean_negative_score:.4f}  ({self.scorer})",
            f"output         {self.output}",
            f"time           {self.seconds:.1f} s",
            *render_time_split(self.time_split),
        ])
