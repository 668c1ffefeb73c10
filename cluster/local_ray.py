"""Start the per-run local Ray (no cluster address given) on loopback, without Ray's 1-second start-up poll.

`ray.init` starts the GCS and the raylet, then asks the GCS for the new raylet's node record.
If the raylet has not registered yet, Ray's `GlobalStateAccessor::GetNode` sleeps a whole
second before it asks again (hard-coded in Ray 2.60). The raylet takes a second or two to
register, so `ray.init` returned on the next whole second, half a second lost on average.
Here the registration is awaited with a short poll before Ray's own check, which then finds
the node at once.

It also starts no dashboard process. With `include_dashboard=False`, Ray 2.60 still starts one
that loads only its usage-stats module and waits for it to publish a URL, a Python process
booting beside the GCS and the raylet on the same cores. A per-run Ray has no dashboard user
(and an offline job nothing to report).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

log = logging.getLogger("batch_embed")

POLL_S = 0.02
# The smallest CPU share one of the job's tasks holds (reads and writes), and where a user sets the limit.
MIN_TASK_CPUS = 0.25
SOFT_LIMIT_ENV = "RAY_num_workers_soft_limit"
# Well inside Ray's own wait (`raylet_start_wait_time_s`, 30 s), which follows this one: a raylet
# that never registers still fails with Ray's error, after ~40 s rather than ~60 s.
NODE_WAIT_S = 10.0


def start_local_ray(num_cpus: int | None = None, **init_kwargs: Any) -> None:
    """`ray.init` of a new single-node Ray whose servers and agents all listen on 127.0.0.1."""
    import ray

    # Ray swaps 127.0.0.1 for the machine's routable IP (services.resolve_ip_for_localhost) unless it
    # believes clusters are off (its Windows/macOS mode); then every Ray server and agent listens on
    # loopback only. tests/test_security.py checks the listening sockets.
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    cpus = num_cpus or os.cpu_count() or 1
    system = {} if SOFT_LIMIT_ENV in os.environ else {"num_workers_soft_limit": worker_soft_limit(cpus)}
    with prompt_node_check(), no_dashboard_process():
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, _system_config=system,
                 **init_kwargs)


def worker_soft_limit(cpus: float) -> int:
    """Idle Ray workers a node keeps: as many as tasks of a quarter CPU fit (Ray's default: one per CPU).

    Reads and writes hold a quarter CPU each (jobs/embed/pipeline.py), so a node runs more tasks at once
    than it has CPUs. Above Ray's default limit every worker that goes idle for a second is killed, and the
    next task waits for a fresh Python process that imports Arrow, Lance and the tokenizer again: in the
    pipeline ceiling run ~20 workers came and went, seconds of CPU each (docs/traps.md).
    """
    return max(1, int(cpus / MIN_TASK_CPUS))


def wait_for_node(gcs_address: str, node_id: str, timeout_s: float = 30.0, poll_s: float = POLL_S) -> bool:
    """True once the GCS lists `node_id` (hex) as alive; False after `timeout_s`."""
    from ray._private import services, state

    accessor = state.GlobalState()
    accessor._initialize_global_state(services._get_gcs_client_options(gcs_address))
    deadline = time.monotonic() + timeout_s
    while True:
        if any(n["NodeID"] == node_id and n["Alive"] for n in accessor.node_table()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


@contextmanager
def _replaced(owner: Any, name: str, replacement: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """`owner.name` is `replacement(original)` inside the block, the original again after it (also on errors).

    Left as it is where `owner` has no `name` (another Ray version's internals).
    """
    original = getattr(owner, name, None)
    if original is None:
        yield
        return
    setattr(owner, name, replacement(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def prompt_node_check() -> AbstractContextManager[None]:
    """While `ray.init` runs: its node lookup first waits for the raylet with `wait_for_node`.

    Anything unexpected falls back to Ray's own lookup, which keeps its timeout and its error message.
    """
    from ray._private import services

    def waiting_first(original: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        def get_node(gcs_address: str, node_id: str) -> Any:
            try:
                wait_for_node(gcs_address, node_id, timeout_s=NODE_WAIT_S)
            except Exception as err:  # noqa: BLE001 - Ray's lookup below reports the real problem
                log.debug("raylet wait skipped: %s", err)
            return original(gcs_address, node_id)

        return get_node

    return _replaced(services, "get_node", waiting_first)


def no_dashboard_process() -> AbstractContextManager[None]:
    """While `ray.init` runs: the head starts without its dashboard (API server) process."""
    from ray._private import node

    def start_api_server(self: Any, **_kwargs: Any) -> None:
        return None  # Node keeps no dashboard URL and no dashboard process to stop

    return _replaced(node.Node, "start_api_server", lambda _original: start_api_server)
