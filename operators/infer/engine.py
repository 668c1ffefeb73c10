"""A thin wrapper that owns one vLLM pooling engine (embedder or reranker) and returns plain float32 numpy.

Operators and tests call this; nothing else in the project touches vLLM. The
engine runs in-process (no engine-core child process), which is what a Ray
actor wants: one actor, one engine, one process to kill and restart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from operators.infer.cpu_scheduling import CpuScheduling, make_thread_realtime
from operators.infer.gpu_plan import cpu_threads_per_engine, engines_on_node, gpu_engine_args, shared_gpu_kv_bytes
from operators.infer.lora_adapter import AdapterPayload, lora_rank_slot
from operators.infer.model_spec import hidden_size_of, load_model_spec, stored_dtype, weight_bytes
from operators.infer.simulated_engine import SimulatedEngine, SimulatedRate

log = logging.getLogger("batch_embed")


@dataclass(frozen=True)
class EngineSpec:
    model_path: str
    max_model_len: int
    dtype: str = "auto"
    gpus: float = 0.0
    trust_remote_code: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    hf_overrides: dict[str, Any] | None = None  # e.g. RERANKER_OVERRIDES
    cpu_scheduling: str = CpuScheduling.normal.value  # CPU engines' compute threads: operators/infer/cpu_scheduling.py
    decided_dtype: str | None = None  # `auto` as the driver decided it once for every engine of the run
    backend: str = "vllm"  # or "simulated": operators/infer/simulated_engine.py
    simulated: SimulatedRate = SimulatedRate()
    tensor_parallel_size: int = 1  # GPUs one engine spans (operators/infer/gpu_plan.py)
    adapter: AdapterPayload | None = None  # a checked LoRA adapter (operators/infer/lora_adapter.py), vLLM serves it

    @property
    def resolved_dtype(self) -> str:
        """The dtype the engine loads. CPU engines' `auto` is bfloat16 or float32, whichever the
        node computes faster (operators/infer/cpu_dtype.py; vLLM's own `auto` would pick an emulated float16),
        decided once for the whole run in a Ray task (`decided_dtype`). GPU engines keep vLLM's `auto`
        (a bfloat16 checkpoint falls back to float16 on GPUs without bfloat16)."""
        if self.backend == "simulated":
            return "simulated"
        if self.decided_dtype is not None:
            return self.decided_dtype
        if self.dtype == "auto" and self.gpus == 0:
            from operators.infer.cpu_dtype import cpu_auto_dtype

            return cpu_auto_dtype(hidden_size_of(self.model_path) or 1024)[0]
        return self.dtype

    @property
    def recorded_dtype(self) -> str:
        """What the table records as this run's engine dtype: the resolved one; for a GPU's `auto`,
        vLLM's rule (bfloat16 checkpoints stay bfloat16, others load as float16)."""
        dtype = self.resolved_dtype
        if dtype == "auto":
            return "bfloat16" if stored_dtype(self.model_path) == "bfloat16" else "float16"
        return dtype

    def engine_args(self) -> dict[str, Any]:
        dtype = self.resolved_dtype
        args: dict[str, Any] = {
            "model": self.model_path,
            "runner": "pooling",
            "dtype": dtype,
            "max_model_len": self.max_model_len,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.hf_overrides:
            args["hf_overrides"] = self.hf_overrides
        if self.gpus > 0:
            args.update(gpu_engine_args(self.gpus, self.tensor_parallel_size))
        else:
            args["gpu_memory_utilization"] = cpu_memory_fraction(weight_bytes(self.model_path, dtype))
            # Tokens per engine step: the fastest of the sizes swept with `batch-embed bench`
            # (docs/benchmark.md). A step must still hold one whole input (no chunked prefill for pooling).
            args["max_num_batched_tokens"] = max(CPU_STEP_TOKENS, self.max_model_len)
            # Compiling costs seconds at every fresh start for no measured gain (docs/benchmark.md).
            args["enforce_eager"] = True
        if self.adapter:
            # vLLM's own LoRA serving: the base weights stay as they are, the adapter is applied per request.
            args.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_slot(self.adapter.rank))
        args.update(self.extra)
        return args


# Qwen3-Reranker is a causal LM; vLLM turns the "no"/"yes" rows of its LM head into a
# one-logit classifier (yes - no), whose sigmoid is exactly softmax(no, yes)[yes].
RERANKER_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}


_GIB = 1 << 30
CPU_STEP_TOKENS = 8192


def cpu_memory_fraction(weights: int, host_bytes: int | None = None) -> float:
    """`gpu_memory_utilization` for a CPU engine, sized from the model.

    On the CPU backend the fraction (of the NUMA node's memory) must hold the whole
    process's non-KV memory, weights plus ~1 GiB of torch runtime, with the KV cache
    in what is left: 0.1 fits a tiny model but not Qwen3-Embedding-0.6B (1.2 GB of
    weights), and vLLM's default 0.92 refuses to start next to anything else.
    """
    if host_bytes is None:
        host_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = 1.0 * _GIB + 1.3 * weights + 0.5 * _GIB
    # x1.5: vLLM measures against one NUMA node, which can be a part of the host.
    return round(min(0.9, max(0.1, 1.5 * need / host_bytes)), 3)


def make_engine(spec: EngineSpec, width: int | None = None) -> Any:
    """The engine `spec.backend` names: a vLLM PoolingEngine, or a SimulatedEngine of the model's width
    (`width`: the driver's ModelSpec.hidden_size, so that an actor need not read the model's config again)."""
    if spec.backend == "simulated":
        width = width or hidden_size_of(spec.model_path) or load_model_spec(spec.model_path).hidden_size or 0
        return SimulatedEngine(width, spec.simulated)
    return PoolingEngine(spec)


class PoolingEngine:
    """One vLLM engine with `runner="pooling"`; takes token ids, returns float32 numpy.

    The engine is built, and every call runs, on one thread of its own. Ray Data
    calls a UDF from another thread than the one that ran its `__init__`
    (`_SingleThreadedWrapper`), and a CPU engine driven from a thread other than
    the one that built it computes on an OpenMP team torch starts for the new
    thread, not the one set up at build time: measurably slower (docs/benchmark.md).
    On a GPU the thread hop per call is negligible.

    A CPU engine's thread is put on real-time scheduling first (`spec.cpu_scheduling`,
    operators/infer/cpu_scheduling.py), so the OpenMP team it starts is too; `realtime_off`
    says why not where it is not (None: real-time).
    """

    def __init__(self, spec: EngineSpec):
        _log_to_stderr_if_unconfigured()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.spec = spec
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-engine")
        self.realtime_off = self._schedule_engine_thread()
        self.llm = self._on_engine_thread(_build_llm, spec)
        self._lora = None
        if spec.adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, spec.adapter.materialize())

    def _schedule_engine_thread(self) -> str | None:
        """Real-time for a CPU engine's thread, before the engine (and its OpenMP team) exists; None: done."""
        if self.spec.gpus > 0:
            return "GPU engine"  # the GPU computes; its host threads are not what waits
        mode = self.spec.cpu_scheduling
        reason = self._on_engine_thread(make_thread_realtime, mode, node_compute_threads())
        if reason is not None and mode == CpuScheduling.auto.value:
            log.warning("CPU engine threads at normal priority: %s. Ray's own processes then preempt them "
                        "(docs/benchmark.md; engine.cpu_scheduling).", reason)
        return reason

    def _on_engine_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._thread.submit(fn, *args).result()

    @staticmethod
    def _prompts(token_ids: Sequence[Sequence[int]]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=list(ids)) for ids in token_ids]

    def embed(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, hidden) pooled, L2-normalised vectors."""
        if not token_ids:
            return np.zeros((0, 0), dtype=np.float32)
        embed = partial(self.llm.embed, use_tqdm=False, lora_request=self._lora)
        outputs = self._on_engine_thread(embed, self._prompts(token_ids))
        return np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32)

    def classify(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """(n,) probability of the classifier's one label (P("yes") for RERANKER_OVERRIDES)."""
        if not token_ids:
            return np.zeros(0, dtype=np.float32)
        classify = partial(self.llm.classify, use_tqdm=False, lora_request=self._lora)
        outputs = self._on_engine_thread(classify, self._prompts(token_ids))
        return np.asarray([o.outputs.probs[-1] for o in outputs], dtype=np.float32)


def _log_to_stderr_if_unconfigured() -> None:
    """Ray's workers configure no logging: the engine's INFO lines (the dtype it chose) would be dropped.

    A stderr handler for this project's logger, only where nothing is configured; Ray forwards
    an actor's stderr to the driver's console.
    """
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


# Set by jobs/core/engine_pool.engine_env: compute threads of all the job's engines that may share a node.
NODE_THREADS_ENV = "BATCH_EMBED_NODE_ENGINE_THREADS"
# `engine.threads_per_actor: auto`: "<cpus_per_actor>:<engines of the job>"; the actor sizes its threads from
# its own node's cores (`apply_node_threads`), since one runtime_env serves every node of the cluster.
AUTO_THREADS_ENV = "BATCH_EMBED_AUTO_THREADS"


def this_node_cpus() -> float:
    """CPUs the Ray node running this process declares (its usable cores outside Ray)."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()
        for n in ray.nodes():
            if n.get("NodeID") == node:
                return float(n["Resources"].get("CPU", 1))
    except Exception:  # noqa: BLE001 - not in a Ray worker: the process's own cores
        pass
    return float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def apply_node_threads(node_cpus: float | None = None) -> int | None:
    """Threads of a CPU engine with `threads_per_actor: auto`, from this node's cores; set before torch loads
    (its OpenMP team reads OMP_NUM_THREADS once). None where the job gave a number (already in the env)."""
    raw = os.environ.pop(AUTO_THREADS_ENV, None)
    if not raw:
        return None
    cpus, engines = (float(x) for x in raw.split(":"))
    node = this_node_cpus() if node_cpus is None else node_cpus
    threads = cpu_threads_per_engine(node, cpus, int(engines))
    os.environ["OMP_NUM_THREADS"] = os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ[NODE_THREADS_ENV] = str(threads * engines_on_node(node, cpus, int(engines)))
    return threads


def node_compute_threads() -> int:
    """Compute threads this engine and its job's others may run on this node (a lone engine: its own).

    An engine's own OpenMP team is OMP_NUM_THREADS (jobs set it), else every usable core.
    """
    for name in (NODE_THREADS_ENV, "OMP_NUM_THREADS"):
        try:
            return max(1, int(os.environ[name]))
        except (KeyError, ValueError):
            continue
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _OwnDtypeChoice(logging.Filter):
    """Drops vLLM's warning per weight (65 lines for MiniLM) that a float32 checkpoint loads narrower.

    Only for `dtype: auto`, where the narrower dtype is the engine's own choice (bfloat16 on CPU,
    see `resolved_dtype`); a dtype the user set keeps vLLM's warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Attempted to load weight %s with dtype")


_OWN_DTYPE_CHOICE = _OwnDtypeChoice()  # one instance: addFilter adds it once per logger


def _build_llm(spec: EngineSpec) -> Any:
    from vllm import LLM  # lazy: workers only

    if spec.dtype == "auto":
        logging.getLogger("vllm.model_executor.models.utils").addFilter(_OWN_DTYPE_CHOICE)
    args = spec.engine_args()
    if 0 < spec.gpus < 1 and not {"kv_cache_memory_bytes", "gpu_memory_utilization"} & set(spec.extra):
        import torch

        dtype = spec.resolved_dtype if spec.resolved_dtype != "auto" else None
        args["kv_cache_memory_bytes"] = shared_gpu_kv_bytes(spec.gpus, torch.cuda.mem_get_info()[1],
                                                            weight_bytes(spec.model_path, dtype))
    return LLM(**args)
