"""How a job's engines are placed: GPUs and threads per engine actor, their environment, the pool's arguments."""

from __future__ import annotations

from typing import Any

from operators.infer.engine import NODE_THREADS_ENV

# Worker environment of the engine actors: the engine runs in the actor's own
# process, and vLLM's per-request INFO lines would drown the driver's log.
ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
    # Where the actor tokenises itself (mining, eval, reranking queries, a model without
    # tokenizer.json), its engine waits meanwhile, so the tokenizer uses all of the actor's
    # threads (RAYON_NUM_THREADS, see engine_env). Explicit, as a job-level runtime_env may
    # say "false" (cluster/submit.py does, for the driver); nothing in the actor forks.
    "TOKENIZERS_PARALLELISM": "true",
}


def resolve_gpus(setting: float | str) -> float:
    """`auto`: one GPU per actor when the cluster has GPUs, else a CPU engine."""
    if setting != "auto":
        return float(setting)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def largest_node_cpus() -> float:
    import ray

    return max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1)


def resolve_threads(setting: int | str, max_actors: int) -> int:
    """`auto`: share the largest node's cores among the pool's actors (CPU engines)."""
    if setting != "auto":
        return int(setting)
    return max(1, int(largest_node_cpus() // max_actors))


def engines_per_node(eng: Any, node_cpus: float, pools: int = 1) -> int:
    """The most engine actors of the job's pools Ray may place on one node (by their CPU reservation)."""
    return max(1, min(eng.actors.max * pools, int(node_cpus // eng.cpus_per_actor)))


def engine_env(gpus: float, threads: int, per_node: int = 1) -> dict[str, str]:
    """Environment of an engine actor: `threads` compute threads, `per_node` engines that may share its node."""
    # Ray sets OMP_NUM_THREADS=<num_cpus> in actors (1 by default), which would pin a CPU
    # engine to one core. The tokenizer's pool takes the actor's share of the node, not
    # every core of it, on GPU nodes too.
    env = {**ENGINE_ENV, "RAYON_NUM_THREADS": str(threads)}
    if gpus > 0:
        return env
    # What the engine weighs before it puts its threads on real-time scheduling (operators/infer/cpu_scheduling).
    return {**env, "OMP_NUM_THREADS": str(threads), NODE_THREADS_ENV: str(threads * per_node)}


def engine_pool_args(eng: Any, gpus: float, pools: int = 1) -> dict[str, Any]:
    """map_batches arguments of an engine actor pool; `eng` is the job's EngineConfig.

    `pools`: engine pools of the job sharing a node's cores (query embedder + reranker).
    """
    import ray.data

    return {
        "compute": ray.data.ActorPoolStrategy(min_size=eng.actors.min, max_size=eng.actors.max),
        "num_cpus": eng.cpus_per_actor,
        "num_gpus": gpus,
        # Placement: Ray Data spreads actor-pool actors over nodes itself (its "SPREAD" default;
        # passing a scheduling strategy is deprecated in 2.60). tests/test_cluster.py checks that a
        # pool of two engines lands on both nodes of a two-node cluster.
        "runtime_env": {"env_vars": engine_env(gpus, resolve_threads(eng.threads_per_actor, eng.actors.max * pools),
                                               engines_per_node(eng, largest_node_cpus(), pools))},
    }
