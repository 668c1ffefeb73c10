"""Where a run's time went, measured per batch: were the engines starved, or was the pipeline waiting on them?

Each engine actor times its own start-up and every engine call (`EngineClock`), and tells the
run's `TimeLedger` (a Ray actor next to the id registry) once per batch, fire-and-forget;
writer tasks tell it how long their fragment writes took. At the end the ledger turns this into
`time_split`: start-up, each engine's busy share (engine calls / its time since it was up),
the time engines waited for input, and the writers' seconds. Busy shares near 1 say "add
engines"; low ones say the CPUs around them (read, validate, tokenise, write) are the limit.

Wall-clock times (`time.time()`) are compared across processes: on one host exactly, on a
cluster as closely as its nodes' clocks agree (NTP: milliseconds, against batches of seconds).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

log = logging.getLogger("batch_embed")


class TimeLedger:
    """Ray actor: the run's per-batch timings from engine actors and writers."""

    def __init__(self) -> None:
        self._engines: dict[str, dict[str, float]] = {}
        self._write_s = 0.0
        self._writes = 0

    def ready(self, key: str, started_at: float, ready_at: float) -> None:
        self._engines[key] = {"started_at": started_at, "ready_at": ready_at, "busy_s": 0.0, "batches": 0,
                              "rows": 0, "last_end": ready_at}

    def batch(self, key: str, ended_at: float, busy_s: float, rows: int) -> None:
        e = self._engines.get(key)
        if e is None:  # `ready` not seen (lost with a killed actor's last messages): count from here
            self.ready(key, ended_at - busy_s, ended_at - busy_s)
            e = self._engines[key]
        e["busy_s"] += busy_s
        e["batches"] += 1
        e["rows"] += rows
        e["last_end"] = max(e["last_end"], ended_at)

    def write(self, seconds: float) -> None:
        self._write_s += seconds
        self._writes += 1

    def report(self, run_started_at: float) -> dict[str, Any]:
        return time_split(self._engines, self._write_s, self._writes, run_started_at)


def time_split(engines: dict[str, dict[str, float]], write_s: float, writes: int,
               run_started_at: float) -> dict[str, Any]:
    """The summary's `time_split` from the ledger's raw figures (pure)."""
    per_engine = {}
    for key, e in sorted(engines.items(), key=lambda kv: kv[1]["ready_at"]):
        span = max(e["last_end"] - e["ready_at"], e["busy_s"], 1e-9)
        per_engine[key] = {"startup_s": round(e["ready_at"] - e["started_at"], 3),
                           "up_at_s": round(e["ready_at"] - run_started_at, 3), "busy_s": round(e["busy_s"], 3),
                           "waiting_s": round(span - e["busy_s"], 3), "busy_share": round(e["busy_s"] / span, 4),
                           "batches": int(e["batches"]), "rows": int(e["rows"])}
    busy = sum(e["busy_s"] for e in per_engine.values())
    waiting = sum(e["waiting_s"] for e in per_engine.values())
    return {
        "first_engine_up_s": min((e["up_at_s"] for e in per_engine.values()), default=None),
        "engine_startup_s": max((e["startup_s"] for e in per_engine.values()), default=None),
        "engines_busy_s": round(busy, 3),
        "engines_waiting_s": round(waiting, 3),
        "busy_share": round(busy / (busy + waiting), 4) if busy + waiting > 0 else None,
        "write_s": round(write_s, 3),
        "writes": writes,
        "engines": per_engine,
    }


def ledger_split(ledger: Any, run_started_at: float) -> dict[str, Any] | None:
    """On the driver: the ledger's `time_split`, or None (with a warning) where it cannot be had."""
    import ray

    try:
        return ray.get(ledger.report.remote(run_started_at), timeout=60)
    except Exception as err:  # noqa: BLE001 - a report without it beats a failed run after the work is done
        log.warning("engine timings unavailable: %s", err)
        return None


class RunClock:
    """On the driver of a run that commits nothing (eval, mine): the TimeLedger its engines tell, and the split."""

    def __init__(self) -> None:
        from operators.driver_actors import driver_node_actor

        self.started_at, self._t0 = time.time(), time.monotonic()
        self.ledger = driver_node_actor(TimeLedger)

    def split(self) -> dict[str, Any] | None:
        """The run's time split (no commits: `commit_s` 0), the ledger actor then let go."""
        import ray

        split = ledger_split(self.ledger, self.started_at)
        ray.kill(self.ledger)
        if split is None:
            return None
        return {**split, "commit_s": 0.0, "wall_s": round(time.monotonic() - self._t0, 3)}


class EngineClock:
    """In an engine actor: times start-up and engine calls, tells the ledger once per batch."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self.key = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        self._busy = 0.0

    def ready(self) -> None:
        if self._ledger is not None:
            self._ledger.ready.remote(self.key, self.started_at, time.time())

    def timed(self, engine: Any) -> Any:
        return _TimedEngine(engine, self)

    def batch_done(self, rows: int) -> None:
        """After each batch: the engine seconds it took (its other work is not the engine's)."""
        busy, self._busy = self._busy, 0.0
        if self._ledger is not None:
            self._ledger.batch.remote(self.key, time.time(), busy, rows)


class _TimedEngine:
    """An engine whose `embed` / `classify` calls add their seconds to the clock."""

    def __init__(self, engine: Any, clock: EngineClock):
        self._engine, self._clock = engine, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def _timed(self, fn: Any, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._clock._busy += time.monotonic() - started

    def embed(self, token_ids: Any) -> Any:
        return self._timed(self._engine.embed, token_ids)

    def classify(self, token_ids: Any) -> Any:
        return self._timed(self._engine.classify, token_ids)
