"""Engine actors alive over a run, sampled on the driver, for the summary (is the pool scaling?).

Ray Data's actor pool grows under backlog and releases idle actors once its
input is drained; neither shows in the final numbers. A daemon thread reads the
actor table (from the GCS: no dashboard needed) every `interval` seconds and
records `[seconds since start, alive actors]` whenever the count of an engine
class changes. Sampling never fails a run: an unreadable table is skipped.

The GCS filters the table to this driver's job and to live actors. Unfiltered,
a sample holds every actor the cluster remembers, dead ones of past jobs
included (Ray keeps up to 100,000): ~13 us of driver CPU each, so on a cluster
that has run for weeks the monitor would take a core, and another job's engines
of the same class (a second table embedded at the same time) would be counted
as this run's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

log = logging.getLogger("batch_embed")


def pool_class_name(udf: str) -> str:
    """The actor class name Ray Data gives the workers of `map_batches(<udf class>)`."""
    return f"MapWorker(MapBatches({udf}))"


def count_alive(actors: Iterable[dict], classes: Iterable[str]) -> dict[str, int]:
    """Alive actors per watched class name (pure: takes the actor table's values)."""
    counts = dict.fromkeys(classes, 0)
    for a in actors:
        name = a.get("ActorClassName") or a.get("ClassName")
        if name in counts and a.get("State") == "ALIVE":
            counts[name] += 1
    return counts


class ActorTimeline:
    """`with ActorTimeline(["Embedder"]) as tl: ...` then `tl.points` -> {"Embedder": [[t, n], ...]}."""

    def __init__(self, udfs: Iterable[str], interval: float = 1.0, settle: float = 3.0):
        self._names = {pool_class_name(u): u for u in udfs}
        self.interval = interval
        self.settle = settle  # seconds to wait at the end for the pool's release to show
        self.points: dict[str, list[list[float]]] = {u: [] for u in self._names.values()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0

    def sample(self) -> None:
        import ray

        try:
            # The GCS actor table (the public state API needs the dashboard), filtered by the GCS.
            job = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
            table = ray._private.state.actors(job_id=job, actor_state_name="ALIVE")
        except Exception as err:  # noqa: BLE001 - a monitor must never fail the run
            log.debug("actor table unreadable: %s", err)
            return
        now = round(time.monotonic() - self.t0, 1)
        for cls, n in count_alive(table.values(), self._names).items():
            series = self.points[self._names[cls]]
            if not series or series[-1][1] != n:
                series.append([now, n])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ActorTimeline:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="actor-timeline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # The pool's end state: Ray Data releases its actors just after the last batch.
        deadline = time.monotonic() + self.settle
        self.sample()
        while time.monotonic() < deadline and any(s and s[-1][1] for s in self.points.values()):
            time.sleep(0.25)
            self.sample()
