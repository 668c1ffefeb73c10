"""One writer per table: a lease file next to the table, refreshed at every commit.

A second job aimed at the same table fails at start with a message naming the
holder. A holder that died (SIGKILL, preemption) leaves its lease behind; it is
taken over when its process is gone (same host) or its heartbeat is older than
the timeout (other hosts), so re-running after a kill just resumes.
Object stores have no atomic create-if-absent through fsspec, so the lease is
written (`claim`), then read back after a pause (`confirm`): of two racing
writers, only the one whose lease survived proceeds. Jobs claim before starting
Ray and confirm after, so the pause costs nothing and a locked table fails
before Ray starts.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

log = logging.getLogger("batch_embed")


class TableLockedError(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TableLock:
    def __init__(
        self, path: str, run_id: str, storage_options: dict[str, Any], timeout_s: float, settle_s: float = 0.5
    ):
        import fsspec.core

        self.fs, self.path = fsspec.core.url_to_fs(path, **storage_options)
        self.display = path
        self.run_id = run_id
        # A resumed run keeps its run id, so the lease names this attempt (process) too.
        self.owner = f"{run_id}/{uuid.uuid4().hex[:12]}"
        self.timeout_s = timeout_s
        self.settle_s = settle_s
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._claimed_at: float | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            with self.fs.open(self.path, "r") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # a torn write by a dead holder: treat as free

    def _write(self) -> None:
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        body = {
            "owner": self.owner,
            "run_id": self.run_id,
            "host": self.host,
            "pid": os.getpid(),
            "heartbeat": time.time(),
        }
        with self.fs.open(self.path, "w") as f:
            f.write(json.dumps(body))

    def _stale(self, held: dict[str, Any]) -> bool:
        if held.get("host") == self.host and not _pid_alive(int(held.get("pid", -1))):
            return True
        return time.time() - float(held.get("heartbeat", 0)) > self.timeout_s

    def acquire(self) -> None:
        self.claim()
        self.confirm()

    def claim(self) -> None:
        """Write the lease unless another live writer holds it; `confirm()` before writing data."""
        held = self._read()
        if held and held.get("owner") != self.owner and not self._stale(held):
            raise TableLockedError(self._busy_message(held))
        self._write()
        self._claimed_at = time.monotonic()
        # Commits refresh the lease too, but long quiet stretches (Ray connecting to a cluster,
        # a big model loading, GPU nodes scaling up) must not make it look abandoned.
        self._beat = threading.Thread(target=self._heartbeat, name="table-lock-heartbeat", daemon=True)
        self._beat.start()

    def confirm(self) -> None:
        """Raise unless the lease is still ours `settle_s` after the claim (waits out what is left of it)."""
        if self._claimed_at is None:
            raise RuntimeError("TableLock.confirm() before claim()")
        time.sleep(max(0.0, self._claimed_at + self.settle_s - time.monotonic()))
        held = self._read()
        if not held or held.get("owner") != self.owner:
            raise TableLockedError(self._busy_message(held or {}))

    def __enter__(self) -> TableLock:
        self.claim()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(60.0, self.timeout_s / 4)):
            held = self._read()
            if held and held.get("owner") != self.owner:
                return  # taken over; the next commit's refresh() stops the run
            self._write()

    def refresh(self) -> None:
        held = self._read()
        if held and held.get("owner") != self.owner:
            raise TableLockedError(
                f"lost the table lock {self.display} to run {held.get('run_id')}; stopping "
                "before committing more (this run can be resumed)"
            )
        self._write()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        try:
            held = self._read()
            if held and held.get("owner") == self.owner:
                self.fs.rm(self.path)
        except Exception as err:  # noqa: BLE001 - storage down: the lease is left, and is stale once we exit
            log.warning("could not release the table lock %s (%s: %s); the next run takes it over",
                        self.display, type(err).__name__, err)

    def _busy_message(self, held: dict[str, Any]) -> str:
        age = time.time() - float(held.get("heartbeat", time.time()))
        return (
            f"sink.table: another job is writing this table (run {held.get('run_id')}, pid {held.get('pid')} on "
            f"{held.get('host')}, last heartbeat {age:.0f} s ago). Wait for it to finish; if it is dead, its "
            f"lock expires after {self.timeout_s:.0f} s, or delete {self.display}"
        )
