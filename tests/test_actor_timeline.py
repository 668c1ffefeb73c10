"""The run summary's engine timeline counts this run's live engine actors only, on a shared Ray."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap

from jobs.actor_timeline import ActorTimeline, pool_class_name

# Another driver (a second job on the same Ray) with one live actor of the engine pool's class name.
OTHER_JOB = textwrap.dedent("""
    import sys, time
    import ray
    from ray._private import ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False  # the session's Ray listens on 127.0.0.1 only
    ray.init(address=sys.argv[1], _node_ip_address="127.0.0.1", log_to_driver=False)
    Engine = ray.remote(num_cpus=0)(type(sys.argv[2], (), {"ping": lambda self: 1}))
    engine = Engine.remote()
    ray.get(engine.ping.remote())
    print("ready", flush=True)
    sys.stdin.read()  # alive until the test closes stdin
""")


def engine_class(ray):
    return ray.remote(num_cpus=0)(type(pool_class_name("Embedder"), (), {"ping": lambda self: 1}))


def test_only_this_jobs_live_engines_are_counted(ray_session):
    ray = ray_session
    engine = engine_class(ray)
    gone = engine.remote()
    ray.get(gone.ping.remote())
    ray.kill(gone)  # dead: the GCS keeps it in its table
    mine = engine.remote()
    ray.get(mine.ping.remote())
    other = subprocess.Popen([sys.executable, "-c", OTHER_JOB, ray.get_runtime_context().gcs_address,
                              pool_class_name("Embedder")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([other.stdout], [], [], 120)
        assert ready and other.stdout.readline().strip() == "ready", "the second job did not start its actor"
        timeline = ActorTimeline(["Embedder", "Reranker"])
        timeline.sample()
        assert timeline.points["Embedder"][-1][1] == 1  # not 2 (the other job's) and not 3 (the dead one)
        assert timeline.points["Reranker"][-1][1] == 0
        ray.kill(mine)
        timeline.sample()
        assert timeline.points["Embedder"][-1][1] == 0
    finally:
        other.stdin.close()
        try:
            other.wait(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()

