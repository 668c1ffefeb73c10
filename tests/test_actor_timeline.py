"""The run summary's engine timeline: this run's engine actors only, from the GCS's start and end times."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
import time

from jobs.core.report.actor_timeline import ActorTimeline, pool_class_name, steps

EMBEDDER = pool_class_name("Embedder")

# Another driver (a second job on the same Ray) with one live actor of the engine pool's class name.
OTHER_JOB = textwrap.dedent("""
    import sys
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


def test_steps_from_start_and_end_times():
    t0 = 1_700_000_000_000.0
    table = [
        {"ActorClassName": EMBEDDER, "State": "DEAD", "StartTime": t0 + 13_000, "EndTime": t0 + 32_100},
        {"ActorClassName": EMBEDDER, "State": "DEAD", "StartTime": t0 + 26_100, "EndTime": t0 + 32_600},
        {"ActorClassName": EMBEDDER, "State": "DEAD", "StartTime": 0, "EndTime": t0 + 5_000},  # died in __init__
        {"ActorClassName": EMBEDDER, "State": "ALIVE", "StartTime": t0 + 40_000, "EndTime": 0},  # still alive
        {"ActorClassName": "IdRegistry", "State": "ALIVE", "StartTime": t0 + 1_000, "EndTime": 0},
    ]
    classes = {EMBEDDER: "Embedder", pool_class_name("Reranker"): "Reranker"}
    assert steps(table, classes, t0) == {
        "Embedder": [[0.0, 0], [13.0, 1], [26.1, 2], [32.1, 1], [32.6, 0], [40.0, 1]],
        "Reranker": [[0.0, 0]],
    }
    # Within the same 0.1 s: one step, the count at its end; a start sorts before an end at the same ms.
    both = [{"ActorClassName": EMBEDDER, "StartTime": t0 + 1_000, "EndTime": t0 + 9_020},
            {"ActorClassName": EMBEDDER, "StartTime": t0 + 9_020, "EndTime": t0 + 9_040}]
    assert steps(both, classes, t0)["Embedder"] == [[0.0, 0], [1.0, 1], [9.0, 0]]


def test_only_this_jobs_engines_are_counted_with_their_real_times(ray_session):
    ray = ray_session
    engine = ray.remote(num_cpus=0)(type(EMBEDDER, (), {"ping": lambda self: 1}))
    other = subprocess.Popen([sys.executable, "-c", OTHER_JOB, ray.get_runtime_context().gcs_address, EMBEDDER],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([other.stdout], [], [], 120)
        assert ready and other.stdout.readline().strip() == "ready", "the second job did not start its actor"
        with ActorTimeline(["Embedder", "Reranker"], settle=10) as timeline:
            time.sleep(0.5)  # a run's engines come alive seconds after its start, never within 0.1 s of it
            first = engine.remote()
            ray.get(first.ping.remote())
            up = time.monotonic() - timeline.t0  # just after the first engine came alive
            second = engine.remote()
            ray.get(second.ping.remote())
            ray.kill(first)
            time.sleep(0.5)  # between two samples of a 1-s poll: the old timeline missed such steps
            ray.kill(second)
        counts = [n for _, n in timeline.points["Embedder"]]
        # Never 3: the other job's engine is not this run's; 2 -> 1 -> 0 although the kills were 0.5 s apart.
        assert counts[0] == 0 and max(counts) == 2 and counts[counts.index(2):] == [2, 1, 0], timeline.points
        assert up - 1.0 < timeline.points["Embedder"][1][0] <= up + 0.1  # the GCS's time, not a sampling tick
        assert timeline.points["Reranker"] == [[0.0, 0]]
    finally:
        other.stdin.close()
        try:
            other.wait(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()


def test_an_unreadable_table_leaves_the_timeline_empty(monkeypatch):
    # The GCS cannot be read: the run goes on, and its summary has no steps rather than made-up ones.
    import ray

    def unreachable():
        raise ConnectionError("GCS unreachable")

    monkeypatch.setattr(ray, "get_runtime_context", unreachable)
    with ActorTimeline(["Embedder"], settle=1) as timeline:
        pass
    assert timeline.points == {"Embedder": []}
