"""What the benchmark measures of a contender's process: peak memory and whole-process seconds."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path
from typing import Any


class MemorySampler:
    """Peak RSS of this process and of all its descendants together.

    Listing the descendants scans all of /proc, which done every 0.2 s would charge a
    measurable share of a small machine to the contenders that start processes. The list
    is refreshed every `relist_every` samples instead; RSS is still read every `interval`.
    """

    def __init__(self, interval: float = 0.2, relist_every: int = 5):
        import psutil

        self._me = psutil.Process()
        self.interval = interval
        self.relist_every = relist_every
        self.workers_peak = 0
        # The largest single descendant's private memory (RSS less shared pages: a Ray worker maps the object
        # store's blocks it reads, which the store bounds, not the worker): is memory bounded per actor?
        self.process_peak = 0
        self.process_peak_name = ""  # its title: Ray names its workers `ray::<actor or task>`
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import psutil

        children: list[Any] = []
        names: dict[int, str] = {}
        tick = 0
        while not self._stop.wait(self.interval):
            if tick % self.relist_every == 0:
                children = self._me.children(recursive=True)
                names = {c.pid: names.get(c.pid) or _title(c) for c in children}
            tick += 1
            total = 0
            for child in children:
                try:
                    mem = child.memory_info()
                except psutil.Error:
                    continue  # exited since the last listing
                total += mem.rss
                if mem.rss - mem.shared > self.process_peak:
                    self.process_peak, self.process_peak_name = mem.rss - mem.shared, names.get(child.pid, "")
            self.workers_peak = max(self.workers_peak, total)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @staticmethod
    def driver_peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _title(proc: Any) -> str:
    """A process's title as `ps` shows it (Ray's workers rename themselves `ray::...`), cut to 60 characters;
    for a Python script (Ray's dashboard, log monitor...) the script's file name."""
    import psutil

    try:
        argv = " ".join(proc.cmdline()).split()
    except psutil.Error:
        return ""
    if len(argv) > 1 and Path(argv[0]).name.startswith("python"):
        return f"python {Path(argv[1]).name}"
    return " ".join(argv)[:60] or proc.name()


def process_seconds() -> float:
    """Seconds since this process started (imports and engine start-up included, as a user pays them)."""
    import psutil

    return time.time() - psutil.Process().create_time()
