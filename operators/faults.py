"""Fault-injection points for the kill tests (datatrove's `fail_at` idea); inert unless the env var is set.

- `BATCH_EMBED_KILL_AT="<point>:<n>"`: SIGKILL this whole process group (as a
  preempted machine would) the n-th time `point` is reached in this process.
- `BATCH_EMBED_PAUSE_AT="<point>:<n>:<seconds>"`: sleep there instead, and write
  `<point>-<pid>` into `BATCH_EMBED_MARKER_DIR` (if set) first, so a test can
  kill this process, or another, from outside at a known moment.

Points: `before_commit`, `mid_commit` (rejected table committed, vectors not),
`after_commit` on the driver; `before_stage` (a gated overwrite, before its candidate is
committed detached) and `after_gate` (judged, not yet published) on the driver;
`embed_batch` inside an embedding actor; `read_shard` in a read task, before it opens its shard.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

KILL_AT_ENV = "BATCH_EMBED_KILL_AT"
PAUSE_AT_ENV = "BATCH_EMBED_PAUSE_AT"
MARKER_DIR_ENV = "BATCH_EMBED_MARKER_DIR"

_reached: Counter[str] = Counter()


def _hook(env: str) -> tuple[str, int, float] | None:
    value = os.environ.get(env)
    if not value:
        return None
    point, n, *seconds = value.split(":")
    return point, int(n), float(seconds[0]) if seconds else 0.0


def point(name: str) -> None:
    """Mark that execution reached `name`; kills or pauses if a test asked for it here."""
    kill, pause = _hook(KILL_AT_ENV), _hook(PAUSE_AT_ENV)
    if kill is None and pause is None:
        return
    _reached[name] += 1
    if kill and kill[:2] == (name, _reached[name]):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    if pause and pause[:2] == (name, _reached[name]):
        marker_dir = os.environ.get(MARKER_DIR_ENV)
        if marker_dir:
            Path(marker_dir, f"{name}-{os.getpid()}").touch()
        time.sleep(pause[2])
