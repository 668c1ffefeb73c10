"""A thin wrapper that owns one vLLM pooling engine and returns plain float32 numpy.

Operators and tests call this; nothing else in the project touches vLLM. The
engine runs in-process (no engine-core child process), which is what a Ray
actor wants: one actor, one engine, one process to kill and restart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EngineSpec:
    model_path: str
    max_model_len: int
    dtype: str = "auto"
    gpus: float = 0.0
    trust_remote_code: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolved_dtype(self) -> str:
        # vLLM's "auto" turns float32 checkpoints into float16, which the CPU
        # backend emulates: 8x slower than bfloat16 on AVX-512/BF16 cores.
        if self.dtype == "auto" and self.gpus == 0:
            return "bfloat16"
        return self.dtype

    def engine_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model_path,
            "runner": "pooling",
            "dtype": self.resolved_dtype,
            "max_model_len": self.max_model_len,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.gpus > 0:
            # Several actors may share one GPU (gpus_per_actor < 1): each takes its share.
            args["gpu_memory_utilization"] = round(0.9 * min(1.0, self.gpus), 3)
        else:
            # On the CPU backend this is the share of host memory reserved for the KV
            # cache; vLLM's default (0.92) refuses to start next to anything else.
            args["gpu_memory_utilization"] = 0.1
            # Small steps keep the CPU caches warm (2048 measured best on 2 cores);
            # a step must still hold one whole input (no chunked prefill for pooling).
            args["max_num_batched_tokens"] = max(2048, self.max_model_len)
            # Compiling costs ~20 s at every fresh start for little gain on short jobs.
            args["enforce_eager"] = True
        args.update(self.extra)
        return args


class EmbeddingEngine:
    """One vLLM engine with `runner="pooling"`; `embed` takes token ids, returns (n, hidden) float32."""

    def __init__(self, spec: EngineSpec):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from vllm import LLM  # lazy: workers only

        self.spec = spec
        self.llm = LLM(**spec.engine_args())

    def embed(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        from vllm.inputs import TokensPrompt

        if not token_ids:
            return np.zeros((0, 0), dtype=np.float32)
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in token_ids]
        outputs = self.llm.embed(prompts, use_tqdm=False)
        return np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32)
