"""The table lease: one writer at a time, dead writers' leases taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from operators.table_lock import TableLock, TableLockedError


def lease(path, run_id, timeout_s=30.0):
    return TableLock(str(path), run_id, {}, timeout_s=timeout_s, settle_s=0.01)


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    first = lease(tmp_path / "t.json", "night-1")
    first.acquire()
    with pytest.raises(TableLockedError, match=r"another job is writing this table \(run night-1, pid \d+"):
        lease(tmp_path / "t.json", "night-2").acquire()
    # a resumed attempt of the same run is a different writer too
    with pytest.raises(TableLockedError):
        lease(tmp_path / "t.json", "night-1").acquire()
    first.release()
    second = lease(tmp_path / "t.json", "night-2")
    second.acquire()
    second.release()
    assert not (tmp_path / "t.json").exists()


def test_heartbeat_keeps_a_quiet_holder_alive(tmp_path):
    holder = lease(tmp_path / "t.json", "slow", timeout_s=0.4)
    holder.acquire()
    before = json.loads((tmp_path / "t.json").read_text())["heartbeat"]
    time.sleep(0.5)
    assert json.loads((tmp_path / "t.json").read_text())["heartbeat"] > before
    with pytest.raises(TableLockedError):
        lease(tmp_path / "t.json", "other", timeout_s=0.4).acquire()
    holder.release()


def test_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    body = {"owner": "gone/1", "run_id": "gone", "host": socket.gethostname(), "pid": int(dead.stdout),
            "heartbeat": time.time()}
    (tmp_path / "t.json").write_text(json.dumps(body))
    new = lease(tmp_path / "t.json", "next")
    new.acquire()
    assert json.loads((tmp_path / "t.json").read_text())["run_id"] == "next"
    new.release()


def test_silent_lease_of_another_host_expires(tmp_path):
    body = {"owner": "far/1", "run_id": "far", "host": "elsewhere", "pid": 1, "heartbeat": time.time()}
    (tmp_path / "t.json").write_text(json.dumps(body))
    with pytest.raises(TableLockedError, match="lock expires after 1 s"):
        lease(tmp_path / "t.json", "next", timeout_s=1).acquire()
    time.sleep(1.1)
    new = lease(tmp_path / "t.json", "next", timeout_s=1)
    new.acquire()
    new.release()
