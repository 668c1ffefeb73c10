"""Source rows and tokens done over a run, for the report's throughput charts.

The committer loop calls `add` for every writer report; a point `[seconds, rows,
tokens]` (cumulative) is kept at most every `interval` seconds, so a night-long run
stays a few thousand points. Rates are derived from it when the report is drawn.
"""

from __future__ import annotations

import time


class ThroughputTimeline:
    def __init__(self, t0: float | None = None, interval: float = 1.0, max_points: int = 4000):
        self.t0 = time.monotonic() if t0 is None else t0
        self.interval = interval
        self.max_points = max_points
        self.points: list[list[float]] = [[0.0, 0, 0]]
        self.rows = 0
        self.tokens = 0
        self._last = self.t0

    def add(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._record(now)

    def close(self) -> list[list[float]]:
        """The points, with the final totals as the last one."""
        if self.points[-1][1:] != [self.rows, self.tokens]:
            self._record(time.monotonic())
        return self.points

    def _record(self, now: float) -> None:
        self._last = now
        self.points.append([round(now - self.t0, 2), self.rows, self.tokens])
        if len(self.points) > self.max_points:  # keep the shape of a long run: drop every other point
            self.points = self.points[::2] + ([self.points[-1]] if len(self.points) % 2 == 0 else [])
            self.interval *= 2
