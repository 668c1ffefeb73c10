"""One writer per table: a lease file next to the table, kept fresh by a heartbeat thread.

A second job aimed at the same table fails at start with a message naming the
holder. A holder that died (SIGKILL, preemption) leaves its lease behind; it is
taken over at once when its process is provably gone (same host AND same pid
namespace, so two containers sharing a hostname never judge each other's pids), or
when its heartbeat is older than the timeout, whatever the host (a KubeRay retry in a
new pod waits at most one timeout). A holder this process cannot check is watched
for up to one timeout: a heartbeat that moves means a live writer (refused), one that
stays still means a dead one (taken over). Before every commit the writer checks the
lease is still its own (`check`, fencing), so a writer that lost it stops cleanly.
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


def pid_namespace() -> str | None:
    """This process's pid namespace (`pid:[4026531836]`): equal hosts AND namespaces mean pids are comparable."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


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
        self.beat_s = timeout_s / 4  # a live holder's heartbeat moves at least this often
        self.settle_s = settle_s
        self.host = socket.gethostname()
        self.pid_ns = pid_namespace()
        self._last_write = 0.0  # monotonic time of our last lease write that succeeded
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
            "pid_ns": self.pid_ns,
            "started": process_started(os.getpid()),
            "heartbeat": time.time(),
        }
        t = time.monotonic()
        with self.fs.open(self.path, "w") as f:
            f.write(json.dumps(body))
        self._last_write = t

    def _local(self, held: dict[str, Any]) -> bool:
        """Whether the holder's pid means something here: same host and same pid namespace."""
        return held.get("host") == self.host and self.pid_ns is not None and held.get("pid_ns") == self.pid_ns

    def _stale(self, held: dict[str, Any]) -> bool:
        if time.time() - float(held.get("heartbeat", 0)) > self.timeout_s:
            return True
        if self._local(held):
            pid = int(held.get("pid", -1))
            return not _pid_alive(pid) or (held.get("started") is not None and
                                           process_started(pid) != held.get("started"))
        return False

    def _wait_out(self, held: dict[str, Any]) -> dict[str, Any] | None:
        """Watch a lease this process cannot check (another host or container) for up to one timeout:
        None once it is stale or gone (take it), the lease if its heartbeat moved (a live writer)."""
        log.info("table lock %s is held by run %s on %s; waiting up to %.0f s to see whether it is alive",
                 self.display, held.get("run_id"), held.get("host"), self.timeout_s)
        deadline = time.monotonic() + self.timeout_s + 1.0
        while time.monotonic() < deadline:
            time.sleep(min(1.0, self.beat_s / 2))
            now = self._read()
            if not now or self._stale(now):
                return None
            if now.get("owner") != held.get("owner") or now.get("heartbeat") != held.get("heartbeat"):
                return now
        return None

    def acquire(self) -> None:
        self.claim()
        self.confirm()

    def claim(self) -> None:
        """Write the lease unless another live writer holds it; `confirm()` before writing data."""
        held = self._read()
        if held and held.get("owner") != self.owner and not self._stale(held):
            alive = held if self._local(held) else self._wait_out(held)
            if alive is not None:
                raise TableLockedError(self._busy_message(alive))
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
        while not self._stop.wait(self.beat_s):
            try:
                held = self._read()
                if held and held.get("owner") != self.owner:
                    return  # taken over; the next commit's check() stops the run
                self._write()
            except Exception as err:  # noqa: BLE001 - storage hiccup: retried next beat; check() fences commits
                log.warning("table lock heartbeat failed (%s: %s)", type(err).__name__, err)

    def check(self) -> None:
        """Fencing, before every commit: raise unless the lease is still ours and was renewed within the
        timeout (after that, another writer may rightly have taken it)."""
        held = self._read()
        if not held or held.get("owner") != self.owner:
            raise TableLockedError(
                f"lost the table lock {self.display} to run {(held or {}).get('run_id')}; stopping "
                "before committing more (this run can be resumed)"
            )
        if time.monotonic() - self._last_write > self.timeout_s:
            raise TableLockedError(
                f"could not renew the table lock {self.display} for over {self.timeout_s:.0f} s; another writer "
                "may have taken it, so this run stops before committing more (it can be resumed)"
            )

    def refresh(self) -> None:
        """After a commit: the heartbeat, renewed."""
        self.check()
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
            f"{held.get('host')}, last heartbeat {age:.0f} s ago, still beating). Wait for it to finish; if it is "
            f"dead, its lock expires {self.timeout_s:.0f} s after its last heartbeat, or delete {self.display}"
        )
