"""What an existing table holds, for incremental (`sink.mode: sync`) runs: id -> fingerprint, columns, row.

Ray actors built once per run by scanning the table's `id` and `fingerprint` columns (the
fragments that existed before the run), hashed with vectorised NumPy: 32 bytes a row in sorted
arrays, never in each worker. A table above INDEX_ROWS_PER_ACTOR rows is split over several
actors by fragment (`IndexClient`): each scans and holds its share (in parallel), and a lookup
asks all of them at once. Workers ask, a batch at a time, whether a row is new, changed,
columns-only changed or unchanged, and where the table holds the old row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from operators.prepare.fingerprints import hash_rows, hash_strings

INDEX_ROWS_PER_ACTOR = 25_000_000  # 800 MB an actor


def scan_ids(uri: str, storage_options: dict[str, str] | None, *, above: int | None = None,
             up_to: int | None = None, columns: tuple[str, ...] = (), id_column: str = "id",
             part: int = 0, parts: int = 1) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """(batch, id hashes) over the fragments with id > `above` / <= `up_to` (every `parts`-th of them from
    `part`); batches carry `_rowaddr`.

    Only `id_column` (plus `columns`) is read, through the scanner: `ds.to_batches(fragments=...)`
    silently reads every fragment in pylance 14.
    """
    from operators.write.run_ledger import open_dataset

    ds = open_dataset(uri, storage_options)
    if ds is None:
        return
    fragments = [f for f in ds.get_fragments()
                 if (above is None or f.fragment_id > above) and (up_to is None or f.fragment_id <= up_to)]
    fragments = fragments[part::parts]
    if not fragments:
        return
    scan = ds.scanner(columns=[id_column, *columns], fragments=fragments, with_row_address=True, batch_size=65536)
    for batch in scan.to_batches():
        yield batch, hash_strings(batch.column(id_column))


class TableIndex:
    """id -> (fingerprint hash, copied-columns hash, row address) of the table's rows before the run.

    `fingerprint_column=None`: ids only (the reranking job asks "is this query finished?",
    append asks "is this id taken?"). `columns`: the copied source columns sync compares.
    """

    def __init__(self, uri: str, storage_options: dict[str, str] | None, fragment_floor: int,
                 id_column: str = "id", fingerprint_column: str | None = "fingerprint",
                 columns: tuple[str, ...] = (), part: int = 0, parts: int = 1):
        keys, prints, cols, addrs = [], [], [], []
        extra = ((fingerprint_column,) if fingerprint_column else ()) + tuple(columns)
        for batch, hashes in scan_ids(uri, storage_options, up_to=fragment_floor, columns=extra, id_column=id_column,
                                      part=part, parts=parts):
            keys.append(hashes)
            prints.append(hash_strings(batch.column(fingerprint_column)) if fingerprint_column
                          else np.zeros(len(hashes), np.uint64))
            cols.append(hash_rows(pa.Table.from_batches([batch]), tuple(columns)))
            addrs.append(batch.column("_rowaddr").to_numpy().astype(np.uint64))
        key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        order = np.argsort(key, kind="stable")

        def sorted_(parts: list[np.ndarray]) -> np.ndarray:
            return (np.concatenate(parts) if parts else np.empty(0, np.uint64))[order]

        self._keys = key[order]
        self._prints, self._cols, self._addrs = sorted_(prints), sorted_(cols), sorted_(addrs)

    def size(self) -> int:
        return len(self._keys)

    def lookup(self, id_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(found, fingerprint hash, copied-columns hash, row address) for each id hash."""
        h = np.asarray(id_hashes, dtype=np.uint64)
        zeros = np.zeros(len(h), np.uint64)
        if not len(self._keys):
            return np.zeros(len(h), bool), zeros, zeros, zeros
        pos = np.minimum(np.searchsorted(self._keys, h), len(self._keys) - 1)
        found = self._keys[pos] == h
        return (found, np.where(found, self._prints[pos], 0), np.where(found, self._cols[pos], 0),
                np.where(found, self._addrs[pos], 0))


class IndexClient:
    """The table's index as validators see it: one or more TableIndex actors (a share of the fragments each),
    asked at once; an id is in at most one share. Picklable (actor handles)."""

    def __init__(self, handles: list[Any]):
        self.handles = handles

    def lookup(self, id_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        import ray

        answers = ray.get([h.lookup.remote(id_hashes) for h in self.handles])
        found, prints, cols, addrs = (np.array(x) for x in answers[0])
        for f, p, c, a in answers[1:]:
            found, prints, cols, addrs = found | f, np.where(f, p, prints), np.where(f, c, cols), np.where(f, a, addrs)
        return found, prints, cols, addrs

    def size(self) -> int:
        import ray

        return sum(ray.get([h.size.remote() for h in self.handles]))


def classify(found: np.ndarray, old_prints: np.ndarray, new_prints: np.ndarray,
             old_cols: np.ndarray | None = None, new_cols: np.ndarray | None = None) -> list[str]:
    """new / changed / columns / unchanged, from an index lookup and this run's fingerprint and column hashes."""
    same_cols = (np.ones(len(found), bool) if old_cols is None or new_cols is None
                 else np.asarray(old_cols) == np.asarray(new_cols))
    out = []
    for f, old, new, cols in zip(found.tolist(), old_prints.tolist(), new_prints.tolist(), same_cols.tolist(),
                                 strict=True):
        out.append("new" if not f else "changed" if old != new else "unchanged" if cols else "columns")
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
