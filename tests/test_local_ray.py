"""The per-run local Ray's start: the raylet wait that replaces Ray's 1-second poll, no dashboard process, fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import local_ray


def test_wait_for_node_sees_the_running_raylet_and_times_out_on_an_unknown_node(ray_session):
    ctx = ray_session.get_runtime_context()
    gcs = ctx.gcs_address
    assert local_ray.wait_for_node(gcs, ctx.get_node_id(), timeout_s=5)
    assert not local_ray.wait_for_node(gcs, "ab" * 28, timeout_s=0.2)


def test_the_lookup_is_patched_only_while_ray_starts_and_falls_back_to_rays_own(monkeypatch):
    from ray._private import services

    calls: list[tuple[str, str]] = []

    def rays_lookup(gcs_address: str, node_id: str) -> dict[str, str]:
        calls.append((gcs_address, node_id))
        return {"NodeID": node_id}

    monkeypatch.setattr(services, "get_node", rays_lookup)

    def unreachable(*_args, **_kwargs):
        raise ConnectionError("no GCS here")

    monkeypatch.setattr(local_ray, "wait_for_node", unreachable)
    with local_ray.prompt_node_check():
        assert services.get_node is not rays_lookup
        # The wait failing is not an error of its own: Ray's lookup runs and answers (or raises its own error).
        assert services.get_node("127.0.0.1:1", "cd" * 28) == {"NodeID": "cd" * 28}
    assert services.get_node is rays_lookup
    assert calls == [("127.0.0.1:1", "cd" * 28)]


def test_the_lookup_is_restored_when_ray_init_fails():
    from ray._private import services

    original = services.get_node
    with pytest.raises(RuntimeError, match="init failed"):
        with local_ray.prompt_node_check():
            raise RuntimeError("init failed")
    assert services.get_node is original


def test_the_dashboard_start_is_skipped_only_while_ray_starts():
    from ray._private import node

    original = node.Node.start_api_server
    with pytest.raises(RuntimeError, match="init failed"):
        with local_ray.no_dashboard_process():
            assert node.Node.start_api_server is not original
            assert node.Node.start_api_server(object(), include_dashboard=False, raise_on_failure=False) is None
            raise RuntimeError("init failed")
    assert node.Node.start_api_server is original


# Four quarter-CPU tasks held together on a 1-CPU Ray, twice with a pause: the same four worker processes
# serve the second round. Ray's own limit (one idle worker per CPU) kills three of them in the pause.
KEPT_WORKERS = """
import os, time
import ray

@ray.remote(num_cpus=0)
class Arrivals:
    def __init__(self):
        self.n = 0
    def arrive(self):
        self.n += 1
    def count(self):
        return self.n

@ray.remote(num_cpus=0.25)
def held(arrivals, n):
    ray.get(arrivals.arrive.remote())
    while ray.get(arrivals.count.remote()) < n:
        time.sleep(0.05)
    return os.getpid()

def kept_workers(n=4):
    rounds = []
    for _ in range(2):
        arrivals = Arrivals.remote()
        rounds.append(set(ray.get([held.remote(arrivals, n) for _ in range(n)])))
        time.sleep(4)  # Ray kills idle workers above its limit after 1 s
    return len(rounds[0]) == n and rounds[1] == rounds[0]
"""


def test_a_local_ray_started_this_way_answers_on_loopback_without_a_dashboard():
    """A fresh driver process: the job's own start path, end to end (the session's Ray is another process's)."""
    script = KEPT_WORKERS + (
        "import ray\n"
        "from cluster import local_ray\n"
        "from ray._private import services\n"
        "waits = []\n"
        "wait = local_ray.wait_for_node\n"
        "local_ray.wait_for_node = lambda *a, **k: waits.append(wait(*a, **k)) or waits[-1]\n"
        "local_ray.start_local_ray(num_cpus=1)\n"
        "assert waits == [True], waits  # ray.init's node lookup went through the prompt wait\n"
        "assert services.get_node.__module__ == 'ray._private.services'\n"
        "assert {n['NodeManagerAddress'] for n in ray.nodes()} == {'127.0.0.1'}\n"
        "import psutil\n"
        "cmds = [' '.join(c.cmdline()) for c in psutil.Process().children(recursive=True)]\n"
        "assert any('raylet' in c for c in cmds) and not any('dashboard/dashboard.py' in c for c in cmds), cmds\n"
        "from ray._private import node\n"
        "assert node.Node.start_api_server.__module__ == 'ray._private.node'\n"
        "print('answer', ray.get(ray.remote(lambda: 41 + 1).remote()))\n"
        "print('kept', kept_workers())\n"
        "ray.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                          cwd=str(Path(__file__).resolve().parent.parent),
                          env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer 42" in done.stdout
    assert "kept True" in done.stdout  # quarter-CPU tasks keep their workers (worker_soft_limit)


def test_idle_workers_kept_four_per_cpu():
    assert [local_ray.worker_soft_limit(c) for c in (1, 2, 3.5, 16)] == [4, 8, 14, 64]

