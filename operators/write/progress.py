"""Pure functions for checkpointed progress: which source rows are committed, as row ranges per shard.

Progress is a mapping `shard path -> [[start, end), ...]` (sorted, merged half-open
row ranges). Each commit records the ranges of the rows it made visible, in the
Lance transaction that commits them, so progress can never get ahead of the data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np

Ranges = list[list[int]]
Progress = dict[str, Ranges]


def rows_to_ranges(rows: Iterable[int]) -> Ranges:
    """Row numbers (any order, duplicates allowed) -> merged half-open ranges."""
    arr = np.unique(np.fromiter(rows, dtype=np.int64))
    if not len(arr):
        return []
    breaks = np.flatnonzero(np.diff(arr) != 1)
    starts = np.concatenate([[arr[0]], arr[breaks + 1]])
    ends = np.concatenate([arr[breaks], [arr[-1]]]) + 1
    return [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def merge_ranges(*parts: Sequence[Sequence[int]]) -> Ranges:
    spans = sorted((int(s), int(e)) for part in parts for s, e in part if e > s)
    out: Ranges = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def merge_progress(*parts: Progress) -> Progress:
    shards = sorted({k for p in parts for k in p})
    return {k: merge_ranges(*(p.get(k, []) for p in parts)) for k in shards}


def progress_of(shards: Sequence[str], rows: Sequence[int]) -> Progress:
    """Progress covered by rows given as parallel (shard, row) sequences."""
    by_shard: dict[str, list[int]] = {}
    for s, r in zip(shards, rows, strict=True):
        by_shard.setdefault(s, []).append(int(r))
    return {s: rows_to_ranges(r) for s, r in sorted(by_shard.items())}


def in_ranges(rows: np.ndarray, ranges: Sequence[Sequence[int]]) -> np.ndarray:
    """Boolean mask: which of `rows` fall inside `ranges` (sorted, merged)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(ranges):
        return np.zeros(len(rows), dtype=bool)
    starts = np.array([r[0] for r in ranges], dtype=np.int64)
    ends = np.array([r[1] for r in ranges], dtype=np.int64)
    i = np.searchsorted(starts, rows, side="right") - 1
    ok = i >= 0
    return ok & (rows < ends[np.clip(i, 0, None)])


def count_in(ranges: Sequence[Sequence[int]], start: int, end: int) -> int:
    """How many rows of [start, end) the ranges cover."""
    return sum(max(0, min(e, end) - max(s, start)) for s, e in ranges)


def total_rows(progress: Progress) -> int:
    return sum(e - s for ranges in progress.values() for s, e in ranges)


def source_signature(shards: Iterable[tuple[str, int]]) -> str:
    """Identity of a source listing: the same shards with the same row counts resume; anything else does not."""
    key = json.dumps(sorted(shards))
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def dumps(progress: Progress) -> str:
    return json.dumps(progress, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Progress:
    return json.loads(text) if text else {}
