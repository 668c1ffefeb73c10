"""What an existing table holds, for incremental (`sink.mode: sync`) runs: id -> fingerprint, fragment.

A Ray actor built once per run by scanning the table's `id` and `fingerprint`
columns (the fragments that existed before the run): 24 bytes a row in sorted
numpy arrays (100M rows: 2.4 GB in this one actor, never in each worker).
Workers ask it, a batch at a time, whether a row is new, changed or unchanged,
and for changed rows which fragment holds the old vector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from operators.prepare.fingerprints import id_hash64


def scan_ids(uri: str, storage_options: dict[str, str] | None, *, above: int | None = None,
             up_to: int | None = None, columns: tuple[str, ...] = (),
             id_column: str = "id") -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """(batch, id hashes) over the fragments with id > `above` / <= `up_to`; batches carry `_rowaddr`.

    Only `id_column` (plus `columns`) is read, through the scanner: `ds.to_batches(fragments=...)`
    silently reads every fragment in pylance 14.
    """
    from operators.write.run_ledger import open_dataset

    ds = open_dataset(uri, storage_options)
    if ds is None:
        return
    fragments = [f for f in ds.get_fragments()
                 if (above is None or f.fragment_id > above) and (up_to is None or f.fragment_id <= up_to)]
    if not fragments:
        return
    scan = ds.scanner(columns=[id_column, *columns], fragments=fragments, with_row_address=True, batch_size=65536)
    for batch in scan.to_batches():
        ids = batch.column(id_column).to_pylist()
        yield batch, np.fromiter((id_hash64(i) for i in ids), dtype=np.uint64, count=len(ids))


class TableIndex:
    """`fingerprint_column=None`: ids only (the reranking job asks "is this query finished?")."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None, fragment_floor: int,
                 id_column: str = "id", fingerprint_column: str | None = "fingerprint"):
        keys, prints, frags = [], [], []
        extra = (fingerprint_column,) if fingerprint_column else ()
        for batch, hashes in scan_ids(uri, storage_options, up_to=fragment_floor, columns=extra, id_column=id_column):
            keys.append(hashes)
            fps = batch.column(fingerprint_column).to_pylist() if fingerprint_column else [""] * len(hashes)
            prints.append(np.fromiter((id_hash64(f or "") for f in fps), dtype=np.uint64, count=len(fps)))
            frags.append((batch.column("_rowaddr").to_numpy() >> 32).astype(np.int64))
        key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        order = np.argsort(key, kind="stable")
        self._keys = key[order]
        self._prints = (np.concatenate(prints) if prints else np.empty(0, np.uint64))[order]
        self._frags = (np.concatenate(frags) if frags else np.empty(0, np.int64))[order]

    def size(self) -> int:
        return len(self._keys)

    def lookup(self, id_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, fingerprint hash, fragment id) for each id hash."""
        h = np.asarray(id_hashes, dtype=np.uint64)
        if not len(self._keys):
            return np.zeros(len(h), bool), np.zeros(len(h), np.uint64), np.full(len(h), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._keys, h), len(self._keys) - 1)
        found = self._keys[pos] == h
        return found, np.where(found, self._prints[pos], 0), np.where(found, self._frags[pos], -1)


def classify(found: np.ndarray, old_prints: np.ndarray, new_prints: np.ndarray) -> list[str]:
    """new / changed / unchanged, from an index lookup and this run's fingerprint hashes."""
    out = []
    for f, old, new in zip(found.tolist(), old_prints.tolist(), new_prints.tolist(), strict=True):
        out.append("unchanged" if f and old == new else "changed" if f else "new")
    return out


def sql_quote_list(values: list[str]) -> str:
    """`'a', 'b'` for an SQL IN list; single quotes doubled."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def delete_predicate(ids: list[str]) -> str:
    return f"id IN ({sql_quote_list(ids)})"


def delete_ids(ds: Any, ids_by_fragment: dict[int, list[str]]) -> tuple[list[int], list[Any]]:
    """Deletion vectors for `ids` in the given fragments of `ds`, uncommitted.

    Returns (fragment ids now empty, updated fragment metadata), for one
    `LanceOperation.Update` that also adds the new rows: replacing a changed
    row's vector is then a single atomic commit, never a moment with both or
    neither.
    """
    removed: list[int] = []
    updated: list[Any] = []
    for fid, ids in sorted(ids_by_fragment.items()):
        fragment = ds.get_fragment(fid)
        if fragment is None or not ids:
            continue
        meta = fragment.delete(delete_predicate(sorted(set(ids))))
        if meta is None:
            removed.append(fid)
        else:
            updated.append(meta)
    return removed, updated


def missing_ids(uri: str, storage_options: dict[str, str] | None, fragment_floor: int,
                seen: Any) -> dict[int, list[str]]:
    """sync.delete_missing: ids in fragments <= floor for which `seen(hashes)` is False, by fragment.

    One scan of the `id` column of the table's older fragments; `seen` asks the
    run's id registry, a chunk at a time.
    """
    out: dict[int, list[str]] = {}
    for batch, hashes in scan_ids(uri, storage_options, up_to=fragment_floor):
        frags = (batch.column("_rowaddr").to_numpy() >> 32).tolist()
        for row_id, frag, present in zip(batch.column("id").to_pylist(), frags, seen(hashes).tolist(), strict=True):
            if not present:
                out.setdefault(int(frag), []).append(row_id)
    return out
