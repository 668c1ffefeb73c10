"""Engine actors alive over a run, from the GCS's actor table, for the summary (is the pool scaling?).

Ray Data's actor pool grows under backlog and releases idle actors once its
input is drained; neither shows in the final numbers. The GCS records when each
actor became alive (its `__init__` done) and when it died, to the millisecond;
at the end of the run one query of this job's actors turns those times into
`[seconds since start, alive actors]` steps per engine class. Nothing polls
during the run, and no change is missed between samples (two engines released
half a second apart show as 2 -> 1 -> 0). Reading the table never fails a run:
an unreadable table leaves the timeline empty.

The GCS filters the table to this driver's job. Unfiltered it holds every actor
the cluster remembers, dead ones of past jobs included (Ray keeps up to
100,000): ~13 us of driver CPU each, and another job's engines of the same class
(a second table embedded at the same time) would be counted as this run's. An
actor restarted by Ray keeps one entry, so the timeline shows its last life only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("batch_embed")


def pool_class_name(udf: str) -> str:
    """The actor class name Ray Data gives the workers of `map_batches(<udf class>)`."""
    return f"MapWorker(MapBatches({udf}))"


def _class(actor: Mapping[str, Any]) -> str | None:
    return actor.get("ActorClassName") or actor.get("ClassName")


def count_alive(actors: Iterable[dict], classes: Iterable[str]) -> dict[str, int]:
    """Alive actors per watched class name (pure: takes the actor table's values)."""
    counts = dict.fromkeys(classes, 0)
    for a in actors:
        name = _class(a)
        if name in counts and a.get("State") == "ALIVE":
            counts[name] += 1
    return counts


def steps(actors: Iterable[Mapping[str, Any]], classes: Mapping[str, str],
          t0_ms: float) -> dict[str, list[list[float]]]:
    """{udf: [[seconds after t0, alive], ...]} from the table's StartTime / EndTime (ms since the epoch).

    `classes`: actor class name -> udf name. A series starts at [0.0, 0] (unless an actor came
    alive within 0.1 s of t0); an actor that never came alive (StartTime 0) is left out, one
    still alive (EndTime 0) has no end. Changes within the same 0.1 s are one step.
    """
    events: dict[str, list[tuple[float, int]]] = {udf: [] for udf in classes.values()}
    for a in actors:
        udf = classes.get(_class(a) or "")
        if udf is None or not a.get("StartTime"):
            continue
        events[udf].append((max(0.0, (a["StartTime"] - t0_ms) / 1000), 1))
        if a.get("EndTime"):
            events[udf].append((max(0.0, (a["EndTime"] - t0_ms) / 1000), -1))
    out: dict[str, list[list[float]]] = {}
    for udf, evs in events.items():
        series, alive = [[0.0, 0]], 0
        for t, delta in sorted(evs, key=lambda e: (e[0], -e[1])):  # a start before an end at the same ms
            alive += delta
            at = round(t, 1)
            if series[-1][0] == at:
                series.pop()  # one step per 0.1 s: the count at its end
            if not series or series[-1][1] != alive:
                series.append([at, alive])
        out[udf] = series
    return out


class ActorTimeline:
    """`with ActorTimeline(["Embedder"]) as tl: ...` then `tl.points` -> {"Embedder": [[t, n], ...]}."""

    def __init__(self, udfs: Iterable[str], settle: float = 3.0):
        self._names = {pool_class_name(u): u for u in udfs}
        self.settle = settle  # seconds to wait at the end for the pool's release to show
        self.points: dict[str, list[list[float]]] = {u: [] for u in self._names.values()}
        self.t0 = 0.0  # time.monotonic() at the start (the throughput timeline shares it)
        self._t0_ms = 0.0  # the same instant on the wall clock, as the GCS records times

    def table(self) -> list[dict[str, Any]] | None:
        """This job's actors from the GCS (the public state API needs the dashboard); None if unreadable."""
        import ray

        try:
            job = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
            return list(ray._private.state.actors(job_id=job).values())
        except Exception as err:  # noqa: BLE001 - a monitor must never fail the run
            log.debug("actor table unreadable: %s", err)
            return None

    def __enter__(self) -> ActorTimeline:
        self.t0, self._t0_ms = time.monotonic(), time.time() * 1000
        return self

    def __exit__(self, *exc: object) -> None:
        # The pool's end state: Ray Data releases its actors just after the last batch.
        deadline = time.monotonic() + self.settle
        table = self.table()
        while table is not None and time.monotonic() < deadline and any(count_alive(table, self._names).values()):
            time.sleep(0.25)
            fresh = self.table()
            table = table if fresh is None else fresh
        if table is not None:
            self.points = steps(table, self._names, self._t0_ms)
