"""Real-time scheduling for a CPU engine's compute threads (`engine.cpu_scheduling`).

Why: a CPU engine's matrix products run on an OpenMP team, one thread per core, that
meets at a barrier after every operator. Inside Ray the engine shares its cores with
Ray's own processes (GCS, raylet, agents, Ray Data's bookkeeping actors, idle workers),
each waking every 10 ms. A wake-up preempts one compute thread and its partner waits at
the next barrier, so each 1% of CPU that Ray takes cost the engine ~2%: on 2 cores the
engine ran at ~0.88 of the same engine alone (`batch-embed bench`, README). With the
team on SCHED_RR at the lowest real-time priority, ordinary processes no longer preempt
it: they run while the engine waits between batches and in the time the kernel keeps for
them (`sched_rt_runtime_us`, 95% by default), and after start-up the job ran as fast as
the engine alone (1.00-1.01x).

The calling thread is switched; threads it starts afterwards inherit the policy, which is
how torch's OpenMP team (started at the first operator run on that thread) gets it. So
PoolingEngine calls this on its engine thread before the engine is built.

Where it would do harm it is not used: more compute threads than cores, counting every
engine of the job that may land on the node (two 2-thread engines on 2 cores took 62 s
real-time against 45 s at normal priority: a real-time thread that shares a core waits up
to 100 ms for it, and its partner at every barrier), or a kernel that keeps no time for
ordinary tasks (`sched_rt_runtime_us = -1`: Ray's own processes could starve). Engines of
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
    (pipeline.engine_env says, for every engine that may share the node).
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
