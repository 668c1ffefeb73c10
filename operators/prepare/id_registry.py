"""A Ray actor that remembers which row claimed each id, to reject duplicates across the whole run.

Ids are kept as 64-bit hashes with the claiming row's position (shard index and
row), about 16 bytes a row in sorted numpy arrays plus a small dict of recent
claims; 100M rows fit in ~1.6 GB. Claims are idempotent per position, so a Ray
task retried after a worker death gets its own rows back instead of seeing
them as duplicates. The cost: two different ids whose 64-bit hashes collide
(about 3 in 10,000 runs at 100M rows) would see the later one rejected as a
duplicate; it lands in the rejected table, never silently lost.
"""

from __future__ import annotations

import numpy as np

_MERGE_AT = 1_000_000


class IdRegistry:
    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._owners = np.empty(0, dtype=np.uint64)
        self._recent: dict[int, int] = {}

    def claim(self, hashes: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """For each (id hash, owner position): True if this row owns the id (first claim or same row)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        owners = np.asarray(owners, dtype=np.uint64)
        ok = np.ones(len(hashes), dtype=bool)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, hashes), len(self._keys) - 1)
            hit = self._keys[pos] == hashes
            ok &= ~hit | (self._owners[pos] == owners)
        for i, (h, o) in enumerate(zip(hashes.tolist(), owners.tolist(), strict=True)):
            if not ok[i]:
                continue
            prev = self._recent.setdefault(h, o)
            ok[i] = prev == o
        if len(self._recent) >= _MERGE_AT:
            self._merge()
        return ok

    def _merge(self) -> None:
        keys = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        owners = np.fromiter(self._recent.values(), dtype=np.uint64, count=len(self._recent))
        all_keys = np.concatenate([self._keys, keys])
        all_owners = np.concatenate([self._owners, owners])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._owners = all_keys[order], all_owners[order]
        self._recent = {}

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        """Which of these id hashes some row of this run claimed (or a seeded, committed one)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        hit = np.zeros(len(hashes), dtype=bool)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, hashes), len(self._keys) - 1)
            hit = self._keys[pos] == hashes
        recent = self._recent
        return hit | np.fromiter((h in recent for h in hashes.tolist()), dtype=bool, count=len(hashes))

    def size(self) -> int:
        return len(self._keys) + len(self._recent)
