"""Jobs as users run them: `python -m jobs.<job> --config FILE` in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml


def run_cli(raw: dict, tmp: Path, kill_at: str | None = None, pause_at: str | None = None,
            module: str = "jobs.embed", env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the job as a user would, in its own process group; hooks: see operators/faults.py."""
    cfg = tmp / "job.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **(env or {})}
    if kill_at:
        env["BATCH_EMBED_KILL_AT"] = kill_at
    if pause_at:
        env["BATCH_EMBED_PAUSE_AT"] = pause_at
        env["BATCH_EMBED_MARKER_DIR"] = str(tmp)
    log_path = tmp / f"job-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(cfg)], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined] - what the job printed, for the test's checks
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        try:  # whatever the job left behind in its process group (its local Ray)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
