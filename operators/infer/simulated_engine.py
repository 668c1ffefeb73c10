"""A stand-in for a vLLM engine (`engine.backend: simulated`): the same interface as PoolingEngine, no model.

What it is for: running a config at fleet scale before renting GPUs. It takes the same
token ids (the model's real tokenizer ran upstream), returns vectors of the model's real
width, and takes the time a real engine would (`tokens_per_second`, `startup_seconds`), so
the pipeline around the engines (read, validate, tokenise, write, commit) meets the load it
will meet on GPUs. Its actors reserve `gpus_per_actor` like real ones, so a Ray cluster that
declares logical GPUs (`ray start --num-gpus 4`) runs a simulated GPU fleet on CPUs.

Vectors are a pure function of the token ids (a 64-bit hash of the ids seeds a splitmix64
stream per row): the same input gives the same vector in any process and on any node, so
resume and sync hold exactly as with a real engine. They carry no meaning; the table
records `simulated` as its engine dtype and real runs refuse to mix with it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.prepare.fingerprints import splitmix64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SimulatedRate:
    """An engine's emulated speed: input tokens a second (0: unlimited) and seconds to start."""

    tokens_per_second: float = 0.0
    startup_seconds: float = 0.0


def ids_seed(ids: Sequence[int]) -> int:
    """64-bit seed of one input's token ids (blake2b: stable across processes and machines)."""
    raw = np.asarray(ids, dtype="<i8").tobytes()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def ids_seeds(token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """`ids_seed` of every input, as uint64."""
    return np.fromiter((ids_seed(ids) for ids in token_ids), dtype=np.uint64, count=len(token_ids))


def simulated_vectors(token_ids: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """(n, width) float32 unit vectors, each a pure function of its row's token ids."""
    seeds = ids_seeds(token_ids)
    with np.errstate(over="ignore"):
        counters = seeds[:, None] + _GOLDEN * np.arange(1, width + 1, dtype=np.uint64)[None, :]
    bits = splitmix64(counters) >> np.uint64(11)  # 53 random bits per element
    vectors = (bits.astype(np.float64) * (2.0 / (1 << 53)) - 1.0).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class SimulatedEngine:
    """PoolingEngine's interface (`embed`, `classify`, `realtime_off`) at an emulated rate.

    The rate is kept as a clock: each call ends no earlier than its tokens / `tokens_per_second`
    after it started, so the time spent here producing vectors counts as engine time, as the
    real engine's own overhead would.
    """

    def __init__(self, width: int, rate: SimulatedRate):
        if width < 1:
            raise ValueError("engine.backend: simulated needs the model's width (hidden_size in its config.json)")
        self.width = width
        self.rate = rate
        self.realtime_off = "simulated engine"
        if rate.startup_seconds > 0:
            time.sleep(rate.startup_seconds)

    def _pace(self, started: float, token_ids: Sequence[Sequence[int]]) -> None:
        if self.rate.tokens_per_second <= 0:
            return
        due = started + sum(len(ids) for ids in token_ids) / self.rate.tokens_per_second
        left = due - time.monotonic()
        if left > 0:
            time.sleep(left)

    def embed(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, width) L2-normalised vectors."""
        started = time.monotonic()
        if not token_ids:
            return np.zeros((0, 0), dtype=np.float32)
        out = simulated_vectors(token_ids, self.width)
        self._pace(started, token_ids)
        return out

    def classify(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """(n,) a probability per input, a pure function of its token ids."""
        started = time.monotonic()
        if not token_ids:
            return np.zeros(0, dtype=np.float32)
        out = ((splitmix64(ids_seeds(token_ids)) >> np.uint64(11)).astype(np.float64) / (1 << 53)).astype(np.float32)
        self._pace(started, token_ids)
        return out
