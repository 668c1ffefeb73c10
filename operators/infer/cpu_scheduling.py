"""Real-time scheduling for a CPU engine's compute threads (`engine.cpu_scheduling`).

A CPU engine's OpenMP team meets at a barrier after every operator; a Ray process that
preempts one compute thread (each wakes every 10 ms) leaves its partner waiting, so the
engine loses about twice the CPU Ray takes. On SCHED_RR at the lowest real-time priority
ordinary processes no longer preempt the team: they run while the engine waits between
batches and in the time the kernel keeps for them (`sched_rt_runtime_us`). Measurements:
docs/benchmark.md.

The calling thread is switched and the threads it starts afterwards inherit the policy
(torch's OpenMP team starts at the first operator run on that thread), so PoolingEngine
calls this on its engine thread before the engine is built. Not used where it would do
harm: more compute threads than cores on the node (a real-time thread that shares a core
waits up to 100 ms for it), or a kernel that keeps no time for ordinary tasks. Engines of
another job on the same node are not counted: run such jobs with `normal`.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

RT_RUNTIME = Path("/proc/sys/kernel/sched_rt_runtime_us")
RT_PRIORITY = 1  # the lowest: any real-time thread the machine's owner runs comes first


class CpuScheduling(str, Enum):
    auto = "auto"  # real-time where permitted and safe, else normal priority (with a warning)
    realtime = "realtime"  # real-time, or the engine fails to start with the reason
    normal = "normal"  # never


class RealtimeUnavailable(RuntimeError):
    """`engine.cpu_scheduling: realtime` on a machine where it cannot (or must not) be had."""


def why_not_realtime(threads: int, cores: int | None = None, rt_runtime: Path = RT_RUNTIME) -> str | None:
    """Why real-time compute threads would be unsafe here (None: safe); nothing is changed.

    `threads`: the compute threads the job's engines may run on this node together
    (jobs/core/engine_pool.engine_env says, for every engine that may share the node).
    """
    if not hasattr(os, "sched_setscheduler"):
        return "this OS has no real-time thread scheduling"
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    if threads > cores:
        return (f"the job's engines may run {threads} compute threads on this node's {cores} core(s), and "
                "real-time threads that share a core stall each other")
    try:
        runtime = int(rt_runtime.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        runtime = None  # no such knob (not Linux proc): the kernel's default applies
    if runtime == -1:
        return ("the kernel keeps no time for ordinary tasks (sched_rt_runtime_us = -1): "
                "real-time compute threads could starve Ray's own processes")
    return None


def make_thread_realtime(mode: CpuScheduling | str, threads: int) -> str | None:
    """Put the calling thread, and the threads it starts later, on SCHED_RR (lowest priority).

    `threads`: as for `why_not_realtime`.
    Returns None when done, else why not (the thread keeps its normal priority). With
    `mode=realtime` a reason raises RealtimeUnavailable instead.
    """
    mode = CpuScheduling(mode)
    if mode is CpuScheduling.normal:
        return "engine.cpu_scheduling is normal"
    reason = why_not_realtime(threads)
    if reason is None:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(RT_PRIORITY))
            return None
        except PermissionError:
            reason = ("real-time scheduling is not permitted for this process (it needs root with CAP_SYS_NICE, "
                      "or `ulimit -r` of at least 1)")
        except OSError as err:  # e.g. EINVAL in a cgroup that grants no real-time runtime
            reason = f"real-time scheduling was refused ({err})"
    if mode is CpuScheduling.realtime:
        raise RealtimeUnavailable(f"engine.cpu_scheduling: realtime: {reason}")
    return reason


def thread_is_realtime() -> bool:
    """Whether the calling thread runs SCHED_RR / SCHED_FIFO."""
    if not hasattr(os, "sched_getscheduler"):
        return False
    return os.sched_getscheduler(0) in (os.SCHED_RR, os.SCHED_FIFO)
