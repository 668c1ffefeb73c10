"""How an engine uses the GPUs and cores Ray gives it: pure functions over declared resources.

Ray only reserves (`num_gpus`, `num_cpus`); what the engine then does with them is decided
here, so that it can be tested without a GPU:
- a whole number of GPUs per engine above one is tensor parallelism (vLLM splits every layer over
  them, in worker processes of its own); any other number above one is a config error;
- a fraction of a GPU is that fraction of its memory, with the KV cache sized up front:
  vLLM's start-up profiling counts what a neighbouring engine allocates meanwhile as its own
  (and asserts when the neighbour frees memory), so engines that start together on one GPU
  would each size against the other;
- a CPU engine's threads are its node's cores divided by the engines that fit on that node.
"""

from __future__ import annotations

from typing import Any

GPU_MEMORY_SHARE = 0.9  # of a whole GPU, vLLM's default: the rest is the CUDA context's and the allocator's
_GIB = 1 << 30
RUNTIME_BYTES = 1 * _GIB  # CUDA context, activations of one step, allocator slack: per engine


def tensor_parallel_size(gpus_per_actor: float, attention_heads: int | None = None) -> int:
    """GPUs one engine spans: 1 up to one GPU, else the whole number asked for (divides the heads)."""
    if gpus_per_actor <= 1:
        return 1
    if gpus_per_actor != int(gpus_per_actor):
        raise ValueError(f"engine.gpus_per_actor: {gpus_per_actor:g}: an engine takes a share of one GPU (up to 1) "
                         "or a whole number of GPUs (tensor parallel); not a fraction above one")
    tp = int(gpus_per_actor)
    if attention_heads and attention_heads % tp:
        raise ValueError(f"engine.gpus_per_actor: {tp}: tensor parallelism splits the model's {attention_heads} "
                         f"attention heads evenly over the GPUs; use a number that divides {attention_heads}")
    return tp


def gpu_memory_utilization(gpus_per_actor: float) -> float:
    """The share of its GPU's memory an engine may use: its share of the GPU (x 0.9 for the runtime)."""
    return round(GPU_MEMORY_SHARE * min(1.0, gpus_per_actor), 3)


def gpu_engine_args(gpus_per_actor: float, tp: int = 1) -> dict[str, Any]:
    """vLLM arguments of a GPU engine from its declared GPUs (the KV cache of a shared GPU: `shared_gpu_kv_bytes`)."""
    args: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization(gpus_per_actor)}
    if tp > 1:
        # vLLM's multiprocessing executor: one worker process per GPU of the actor's (Ray sets
        # CUDA_VISIBLE_DEVICES); its Ray executor would ask for a placement group inside Ray Data's.
        args.update(tensor_parallel_size=tp, distributed_executor_backend="mp")
    return args


def shared_gpu_kv_bytes(gpus_per_actor: float, total_bytes: int, weight_bytes: int) -> int | None:
    """KV cache bytes of an engine that shares its GPU (None: a whole GPU, vLLM profiles it alone).

    Its share of the GPU's memory, less its weights (x1.2: buffers, the embedding layer's copies) and
    RUNTIME_BYTES; a share that cannot hold the model is a config error.
    """
    if gpus_per_actor >= 1:
        return None
    share = gpu_memory_utilization(gpus_per_actor) * total_bytes
    kv = int(share - 1.2 * weight_bytes - RUNTIME_BYTES)
    if kv < 64 * (1 << 20):
        raise ValueError(f"engine.gpus_per_actor: {gpus_per_actor:g} of a {total_bytes / _GIB:.0f} GiB GPU is "
                         f"{share / _GIB:.1f} GiB, too little for the model's {weight_bytes / _GIB:.1f} GiB of "
                         "weights and its runtime; give each engine a larger share")
    return kv


def engines_on_node(node_cpus: float, cpus_per_actor: float, max_engines: int) -> int:
    """Engine actors Ray can place on a node: by their CPU reservation, at most the pool's size."""
    return max(1, min(max_engines, int(node_cpus // cpus_per_actor)))


def cpu_threads_per_engine(node_cpus: float, cpus_per_actor: float, max_engines: int) -> int:
    """A CPU engine's compute threads: the node's cores shared by the engines that fit on that node.

    Per node, not per cluster: on a cluster of 8- and 32-core nodes an engine on a 32-core node takes
    its share of 32, and a pool larger than one node holds does not shrink every engine to one thread.
    """
    return max(1, int(node_cpus // engines_on_node(node_cpus, cpus_per_actor, max_engines)))
