"""`model.dtype: auto` on a CPU engine: bfloat16 where the engine's node computes it fast, else float32.

vLLM's own `auto` turns a float32 checkpoint into float16, which CPUs emulate, so CPU
engines never take it. Which of bfloat16 and float32 is faster depends on the CPU, and by
a lot (figures in docs/traps.md): AMX runs bf16 several times faster; some CPUs with
AVX-512 BF16 but no AMX run it slower than fp32; CPUs without bf16 instructions emulate
it. So: AMX -> bfloat16, no bf16 instructions at all -> float32, and where the flags cannot
tell (AVX-512 BF16 without AMX, other architectures) a short timed matrix product in both
dtypes on the engine's node decides (once per process). bfloat16 wins ties: half the
memory of float32, and no flip-flop between runs.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from pathlib import Path

log = logging.getLogger("batch_embed")

CPUINFO = Path("/proc/cpuinfo")
# float32 must be this much faster to be taken: a measured tie keeps bfloat16.
FLOAT32_MARGIN = 1.25


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str] | None:
    """The first CPU's feature flags (x86 `flags`, Arm `Features`); None where unknown."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
    except OSError:
        pass
    return None


def dtype_from_flags(flags: set[str] | None) -> tuple[str, str] | None:
    """(dtype, why) where the CPU's flags settle it; None where only a measurement can."""
    if flags is None:
        return None
    if "amx_bf16" in flags:
        return "bfloat16", "AMX bfloat16 matrix units"
    x86 = "avx2" in flags or "sse2" in flags
    if x86 and "avx512_bf16" not in flags:
        return "float32", "no bfloat16 instructions (AVX512_BF16 / AMX): bfloat16 would be emulated"
    return None


def gemm_rates(m: int, k: int, n: int, rounds: int = 3, seconds: float = 0.04,
               dtypes: tuple[str, ...] = ("bfloat16", "float32")) -> dict[str, float]:
    """Best FLOP/s of an (m x k) @ (k x n) product per dtype over `rounds` interleaved timed loops."""
    import torch

    mats = {d: (torch.randn(m, k, dtype=getattr(torch, d)), torch.randn(k, n, dtype=getattr(torch, d)))
            for d in dtypes}
    for a, b in mats.values():
        a @ b  # first call: kernel selection and JIT, not timed
    best = dict.fromkeys(dtypes, 0.0)
    for _ in range(rounds):
        for d, (a, b) in mats.items():  # interleaved: a slow spell hits both dtypes
            reps, start = 0, time.perf_counter()
            while True:
                a @ b
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            best[d] = max(best[d], 2 * m * k * n * reps / elapsed)
    return best


def dtype_from_rates(rates: dict[str, float]) -> tuple[str, str]:
    bf16, fp32 = rates["bfloat16"], rates["float32"]
    measured = f"matrix products on this node: bfloat16 {bf16 / 1e12:.3f}, float32 {fp32 / 1e12:.3f} TFLOP/s"
    return ("float32" if fp32 > FLOAT32_MARGIN * bf16 else "bfloat16"), measured


@cache
def cpu_auto_dtype(hidden_size: int = 1024) -> tuple[str, str]:
    """(dtype, why) for `dtype: auto` on this node's CPU engine; measured at most once per process.

    The timed product is a step's shape for a model of `hidden_size` (512 tokens x hidden x
    up to 4 hidden), so the measurement is about the kernels the engine will run.
    """
    settled = dtype_from_flags(cpu_flags())
    if settled is None:
        settled = dtype_from_rates(gemm_rates(512, hidden_size, min(4 * hidden_size, 2048)))
    log.info("engine dtype auto -> %s (%s)", *settled)
    return settled
