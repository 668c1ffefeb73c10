"""Real-time compute threads for CPU engines (operators/infer/cpu_scheduling.py, `engine.cpu_scheduling`).

Whether this machine permits real-time scheduling decides which branch a test checks
(CI runs as root, so there it is the real-time one); either way the outcome is asserted.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from operators.infer.cpu_scheduling import (
    CpuScheduling,
    RealtimeUnavailable,
    make_thread_realtime,
    thread_is_realtime,
    why_not_realtime,
)

REALTIME = (os.SCHED_RR, os.SCHED_FIFO)


def on_new_thread(fn, *args):
    """fn(*args) on a thread of its own (so the test process's main thread keeps its policy)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # re-raised on the caller's thread
            out["error"] = err

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def realtime_tids() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task") if _policy(int(t)) in REALTIME}


def _policy(tid: int) -> int | None:
    try:
        return os.sched_getscheduler(tid)
    except OSError:  # exited meanwhile
        return None


def test_more_compute_threads_than_cores_stay_normal(tmp_path):
    knob = tmp_path / "rt_runtime"
    knob.write_text("950000\n")
    assert why_not_realtime(2, cores=2, rt_runtime=knob) is None
    reason = why_not_realtime(3, cores=2, rt_runtime=knob)
    assert "3 compute threads" in reason and "2 core(s)" in reason


def test_a_kernel_that_keeps_no_time_for_other_tasks_stays_normal(tmp_path):
    knob = tmp_path / "rt_runtime"
    knob.write_text("-1\n")
    assert "sched_rt_runtime_us = -1" in why_not_realtime(1, cores=2, rt_runtime=knob)
    # no such knob: the kernel's default (which keeps 5%) applies
    assert why_not_realtime(1, cores=2, rt_runtime=tmp_path / "missing") is None


def test_normal_never_touches_the_thread():
    reason, realtime = on_new_thread(lambda: (make_thread_realtime("normal", 1), thread_is_realtime()))
    assert reason == "engine.cpu_scheduling is normal" and not realtime


def test_realtime_fails_where_auto_would_fall_back():
    too_many = 10 * len(os.sched_getaffinity(0))
    reason = on_new_thread(make_thread_realtime, CpuScheduling.auto, too_many)
    assert "real-time threads that share a core" in reason
    with pytest.raises(RealtimeUnavailable, match=r"^engine\.cpu_scheduling: realtime: the job's engines"):
        on_new_thread(make_thread_realtime, "realtime", too_many)


def test_a_refused_switch_says_what_is_needed(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    reason = on_new_thread(make_thread_realtime, "auto", 1)
    assert "not permitted" in reason and "CAP_SYS_NICE" in reason and "ulimit -r" in reason
    with pytest.raises(RealtimeUnavailable, match="not permitted"):
        on_new_thread(make_thread_realtime, "realtime", 1)


def test_the_thread_and_the_openmp_team_it_starts_run_real_time():
    """The property PoolingEngine relies on: torch's OpenMP workers inherit the policy of the thread that
    first runs an operator, so switching the engine's thread before the engine exists covers its team."""
    import torch

    threads = min(2, len(os.sched_getaffinity(0)))
    before = realtime_tids()
    seen: dict = {}

    def engine_thread():
        seen["reason"] = make_thread_realtime("auto", threads)
        torch.set_num_threads(threads)
        a = torch.randn(256, 256)
        for _ in range(20):
            a = torch.tanh(a @ a)  # a parallel region: the team is started here, from this thread
        seen["me"] = threading.get_native_id()
        seen["realtime"] = realtime_tids() - before

    on_new_thread(engine_thread)
    assert not thread_is_realtime(), "the caller's thread must keep its policy"
    if seen["reason"] is not None:  # a machine without the permission: nothing changed
        assert "not permitted" in seen["reason"] or "refused" in seen["reason"]
        assert not seen["realtime"]
        return
    assert seen["me"] in seen["realtime"]
    assert len(seen["realtime"]) >= threads, "the OpenMP workers started by the real-time thread are real-time"
    assert all(os.sched_getparam(t).sched_priority == 1 for t in seen["realtime"] if _policy(t) is not None)


@pytest.mark.engine
def test_a_cpu_engine_computes_on_real_time_threads_and_normal_keeps_them_normal(ray_session, minilm_path: Path):
    from jobs.core.engine_pool import engine_env

    class Probe:
        """A PoolingEngine in an actor with a job's environment; reports its process's threads."""

        def __init__(self, mode: str):
            from operators.infer.engine import EngineSpec, PoolingEngine

            self.engine = PoolingEngine(EngineSpec(model_path=str(minilm_path), max_model_len=64,
                                                   cpu_scheduling=mode))
            self.engine.embed([[101, 7592, 102]])  # one step: the OpenMP team exists

        def report(self) -> dict:  # self-contained: the class travels to the actor by value
            import os
            import threading

            rt = set()
            for tid in map(int, os.listdir("/proc/self/task")):
                try:
                    if os.sched_getscheduler(tid) in (os.SCHED_RR, os.SCHED_FIFO):
                        rt.add(tid)
                except OSError:
                    pass
            main = threading.main_thread().native_id
            return {"off": self.engine.realtime_off, "realtime": len(rt), "main_realtime": main in rt}

    env = {"env_vars": engine_env(0.0, 2)}
    reports = {}
    for mode in ("auto", "normal"):
        actor = ray_session.remote(num_cpus=1, runtime_env=env)(Probe).remote(mode)
        reports[mode] = ray_session.get(actor.report.remote())
        ray_session.kill(actor)
    assert reports["normal"] == {"off": "engine.cpu_scheduling is normal", "realtime": 0, "main_realtime": False}
    auto = reports["auto"]
    assert not auto["main_realtime"], "Ray's task thread in the actor keeps its normal priority"
    if auto["off"] is None:
        assert auto["realtime"] >= 2, "the engine's thread and its OpenMP worker run real-time"
    else:
        assert auto["realtime"] == 0 and ("not permitted" in auto["off"] or "refused" in auto["off"])
