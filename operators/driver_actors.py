"""A run's helper actors (id registry, table index, time ledger) live on the driver's node.

They hold state that nothing can rebuild mid-run (which row claimed each id). Ray would place
a zero-CPU actor on any node, and a worker node that dies mid-run would take the run with it,
though Ray retries every engine and task that was there on the nodes left. Pinned to the
driver's node they die only with the driver, which ends the run anyway (it resumes from its
commits). Their memory is bounded per actor (id_registry.py, table_index.py); all of it is on
the driver's node: ~16 bytes per source row for the registry.
"""

from __future__ import annotations

from typing import Any


def driver_node_actor(cls: type, *args: Any) -> Any:
    """`cls(*args)` as a zero-CPU Ray actor on this (the driver's) node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=here)(cls).remote(*args)
