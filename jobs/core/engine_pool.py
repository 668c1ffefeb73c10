"""How a job's engines are placed: GPUs and threads per engine actor, their environment, the pool's arguments."""

from __future__ import annotations

from typing import Any

from operators.infer.engine import AUTO_THREADS_ENV, NODE_THREADS_ENV
from operators.infer.gpu_plan import engines_on_node, tensor_parallel_size

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


def engines_per_node(eng: Any, node_cpus: float, pools: int = 1) -> int:
    """The most engine actors of the job's pools Ray may place on one node (by their CPU reservation)."""
    return engines_on_node(node_cpus, eng.cpus_per_actor, eng.actors.max * pools)


def engine_env(gpus: float, threads: int | None, per_node: int = 1, *, cpus_per_actor: float = 1.0,
               engines: int = 1, tp: int = 1) -> dict[str, str]:
    """Environment of an engine actor: `threads` compute threads (None: `auto`, sized by the actor from its own
    node's cores, operators/infer/engine.apply_node_threads), `per_node` engines that may share its node."""
    if gpus > 0:
        # The GPU computes; the actor's CPUs tokenise (where it does) and feed it: its tokenizer takes
        # the CPUs Ray reserved for it. Tensor parallel engines run vLLM's engine core in a process of its own.
        env = {**ENGINE_ENV, "RAYON_NUM_THREADS": str(max(1, int(cpus_per_actor)))}
        return {**env, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"} if tp > 1 else env
    if threads is None:
        return {**ENGINE_ENV, AUTO_THREADS_ENV: f"{cpus_per_actor:g}:{engines}"}
    # Ray sets OMP_NUM_THREADS=<num_cpus> in actors (1 by default), which would pin a CPU engine to one
    # core. What the engine weighs before it puts its threads on real-time scheduling: NODE_THREADS_ENV.
    return {**ENGINE_ENV, "RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            NODE_THREADS_ENV: str(threads * per_node)}


def cpu_engine_dtype(engine: Any, cpus: float) -> str:
    """`engine.resolved_dtype` (an EngineSpec) decided in a Ray task that holds an engine's `cpus`, so on a node
    that can run one: `dtype: auto` may time matrix products (operators/infer/cpu_dtype.py), which says
    nothing on a head node of another CPU kind, and would load torch into the driver (where, seen on 2.13
    with a job's driver, oneMKL failed to load libtorch_cpu.so and killed the run)."""
    import ray

    if engine.backend == "simulated":
        return engine.resolved_dtype
    measure = ray.remote(num_cpus=cpus, max_retries=1)(_resolved_dtype)
    return ray.get(measure.remote(engine))


def _resolved_dtype(engine: Any) -> str:
    return engine.resolved_dtype


def engine_pool_args(eng: Any, gpus: float, pools: int = 1) -> dict[str, Any]:
    """map_batches arguments of an engine actor pool; `eng` is the job's EngineConfig.

    `pools`: engine pools of the job sharing a node's cores (query embedder + reranker).
    """
    import ray.data

    threads = None if eng.threads_per_actor == "auto" else int(eng.threads_per_actor)
    return {
        "compute": ray.data.ActorPoolStrategy(min_size=eng.actors.min, max_size=eng.actors.max),
        "num_cpus": eng.cpus_per_actor,
        "num_gpus": gpus,
        # Placement: Ray Data spreads actor-pool actors over nodes itself (its "SPREAD" default;
        # passing a scheduling strategy is deprecated in 2.60). tests/test_cluster.py checks that a
        # pool of two engines lands on both nodes of a two-node cluster.
        "runtime_env": {"env_vars": engine_env(gpus, threads, engines_per_node(eng, largest_node_cpus(), pools),
                                               cpus_per_actor=eng.cpus_per_actor, engines=eng.actors.max * pools,
                                               tp=tensor_parallel_size(gpus))},
    }
