"""Ray actors that remember which row claimed each id, to reject duplicates across the whole run.

Ids are kept as 64-bit hashes with the claiming row's position (shard index and row),
16 bytes a row, in sorted NumPy runs merged log-structured (a new run merges with the one
before it while that one is at most twice its size): every claim is a few `searchsorted`
over O(log n) runs and one sort of the batch, with no per-row Python, and each row is
re-sorted O(log n) times over the run instead of once per million new ids.

The hash space is split over `parts` actors by the top bits of the hash (`RegistryClient`),
so memory per actor stays bounded (REGISTRY_ROWS_PER_ACTOR: 400 MB) and claims from many
validator tasks go to several actors at once instead of queueing on one.

Claims are idempotent per position, so a Ray task retried after a worker death gets its own
rows back instead of seeing them as duplicates. The cost: two different ids whose 64-bit
hashes collide (about 3 in 10,000 runs at 100M rows) would see the later one rejected as a
duplicate; it lands in the rejected table, never silently lost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

REGISTRY_ROWS_PER_ACTOR = 25_000_000


def partitions_for(rows: int, per_actor: int) -> int:
    """Actors for `rows` rows at `per_actor` each (at least one)."""
    return max(1, math.ceil(rows / per_actor))


def partition_of(hashes: np.ndarray, parts: int) -> np.ndarray:
    """The actor owning each hash: its top bits scaled to `parts` (uniform for a good hash)."""
    if parts == 1:
        return np.zeros(len(hashes), dtype=np.int64)
    return ((hashes >> np.uint64(32)).astype(np.uint64) * np.uint64(parts) >> np.uint64(32)).astype(np.int64)


def _first_per_key(keys: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence (in input order) of each key."""
    order = np.argsort(keys, kind="stable")
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    out = np.zeros(len(keys), dtype=bool)
    out[order[first]] = True
    return out


class IdRegistry:
    """One partition of the run's claimed ids (the whole run where there is one)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys, owners), largest first

    def _find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, owner) of each hash over every run."""
        found = np.zeros(len(hashes), dtype=bool)
        owner = np.zeros(len(hashes), dtype=np.uint64)
        for keys, owners in self._runs:
            pos = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
            hit = (keys[pos] == hashes) & ~found
            owner[hit] = owners[pos[hit]]
            found |= hit
        return found, owner

    def claim(self, hashes: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """For each (id hash, owner position): True if this row owns the id (first claim or same row)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        owners = np.asarray(owners, dtype=np.uint64)
        found, prev = self._find(hashes)
        ok = ~found | (prev == owners)
        # New ids: the first position in this claim wins; a later row with the same id is a duplicate.
        new = ~found
        first = np.zeros(len(hashes), dtype=bool)
        first[new] = _first_per_key(hashes[new])
        ok &= found | first
        if first.any():
            self._add(hashes[first], owners[first])
        return ok

    def _add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], owners[order]))
        while len(self._runs) >= 2 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (k2, o2), (k1, o1) = self._runs.pop(), self._runs.pop()
            keys, owners = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(keys, kind="stable")
            self._runs.append((keys[order], owners[order]))

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        """Which of these id hashes some row of this run claimed (or a seeded, committed one)."""
        return self._find(np.asarray(hashes, dtype=np.uint64))[0]

    def size(self) -> int:
        return sum(len(k) for k, _ in self._runs)


class RegistryClient:
    """The run's registry as its callers see it: routes each hash to the actor of its partition.

    Picklable (actor handles), so validator tasks take it; the actors answer in parallel.
    """

    def __init__(self, handles: list[Any]):
        self.handles = handles

    def _scatter(self, method: str, hashes: np.ndarray, *columns: np.ndarray, dtype: Any = bool) -> np.ndarray:
        import ray

        hashes = np.asarray(hashes, dtype=np.uint64)
        part = partition_of(hashes, len(self.handles))
        picks = [np.flatnonzero(part == p) for p in range(len(self.handles))]
        calls = [(p, getattr(self.handles[p], method).remote(hashes[idx], *(c[idx] for c in columns)))
                 for p, idx in enumerate(picks) if len(idx)]
        out = np.zeros(len(hashes), dtype=dtype)
        for (p, _), answer in zip(calls, ray.get([ref for _, ref in calls]), strict=True):
            out[picks[p]] = answer
        return out

    def claim(self, hashes: np.ndarray, owners: np.ndarray) -> np.ndarray:
        return self._scatter("claim", hashes, np.asarray(owners, dtype=np.uint64))

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        return self._scatter("seen", hashes)

    def size(self) -> int:
        import ray

        return sum(ray.get([h.size.remote() for h in self.handles]))
