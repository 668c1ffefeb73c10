"""Exact top-k for a batch of queries at several Matryoshka sizes, in one scan of a vector table.

Column contract:
- needs `vector` (the query's vector at the table's full size, L2-normalised; null: not
  searched) and `action` (rows whose action is `new` are searched).
- adds, for each size d in `spec.dims`, `doc_id@d` (list of string, best first) and
  `score@d` (list of float32, cosine at size d); null lists on rows not searched.
- with `spec.text_dims` set, also adds `doc_id` and `doc_text` (the candidates at that size
  with their text), which is what the Reranker reads.
- drops `vector`; the query embedder's `n_tokens` / `truncated` become `query_tokens` /
  `query_truncated` (the reranker adds its own).

Why one scan for every size: truncating a stored vector to its first d values and
re-normalising (mrl_truncate) is cheap next to reading it, so each block of the
table is read once and scored at every size. Why exact: the evaluation measures the
embedding, not an ANN index's recall; the result must not move with index settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.candidate_retriever import merge_top_k, sort_top_k
from operators.contract import require_columns
from operators.vectors import mrl_truncate

REQUIRED = ("vector", "action")
_BLOCK_ROWS = 16384


@dataclass(frozen=True)
class MrlRetrievalSpec:
    uri: str  # the Lance dataset of the vector table
    version: int
    dims: tuple[int, ...]  # Matryoshka sizes to search at (each <= the stored width)
    top_k: int
    text_dims: int | None = None  # also return the candidates' text at this size (for reranking)
    text_column: str = "text"
    id_column: str = "id"
    storage_options: dict[str, str] = field(default_factory=dict)


def top_k_at_dims(blocks, queries: np.ndarray, k: int,
                  dims: tuple[int, ...]) -> dict[int, list[list[tuple[float, int]]]]:
    """Per size d: (cosine at d, key) of the k best rows per query, best first.

    `blocks`: iterable of (vectors (b, width) float32, keys (b,) int64); `queries`: (m, width).
    Pure, so the test's independent search and this one can be compared on the same input.
    """
    m = len(queries)
    q_at = {d: mrl_truncate(queries, d) for d in dims}
    best = {d: (np.full((m, 0), -np.inf, dtype=np.float32), np.zeros((m, 0), dtype=np.int64)) for d in dims}
    for vectors, keys in blocks:
        if not len(keys):
            continue
        for d in dims:
            scores = q_at[d] @ mrl_truncate(vectors, d).T
            best[d] = merge_top_k(*best[d], scores, keys, k)
    return {d: sort_top_k(*best[d]) for d in dims}


def table_blocks(ds):
    """(vectors, row addresses) blocks of a Lance dataset's `vector` column."""
    scan = ds.scanner(columns=["vector"], with_row_address=True, batch_size=_BLOCK_ROWS)
    for batch in scan.to_batches():
        if not batch.num_rows:
            continue
        col = batch.column("vector")
        width = col.type.list_size
        vectors = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
        yield vectors, batch.column("_rowaddr").to_numpy().astype(np.int64)


def retrieve_at_dims(batch: pa.Table, spec: MrlRetrievalSpec) -> pa.Table:
    """The operator (a plain function: Ray runs it as tasks, each opening the pinned table version)."""
    import lance

    require_columns(batch, REQUIRED, "MrlRetriever")
    active = pc.and_(pc.equal(batch.column("action"), "new"),
                     pc.is_valid(batch.column("vector"))).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(active)
    n = batch.num_rows
    ids: dict[int, list] = {d: [None] * n for d in spec.dims}
    scores: dict[int, list] = {d: [None] * n for d in spec.dims}
    texts: list = [None] * n
    if len(rows):
        ds = lance.dataset(spec.uri, version=spec.version, storage_options=spec.storage_options or None)
        col = batch.column("vector").combine_chunks().take(pa.array(rows))
        queries = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(rows), -1)
        hits = top_k_at_dims(table_blocks(ds), queries, spec.top_k, spec.dims)
        addresses = sorted({a for per_dim in hits.values() for row in per_dim for _, a in row})
        columns = [spec.id_column] + ([spec.text_column] if spec.text_dims else [])
        found = ds._take_rows(addresses, columns=columns) if addresses else None
        id_of = dict(zip(addresses, found.column(spec.id_column).to_pylist(), strict=True)) if found else {}
        text_of = (dict(zip(addresses, found.column(spec.text_column).to_pylist(), strict=True))
                   if found is not None and spec.text_dims else {})
        for d in spec.dims:
            for r, row in zip(rows.tolist(), hits[d], strict=True):
                ids[d][r] = [str(id_of[a]) for _, a in row]
                scores[d][r] = [s for s, _ in row]
                if d == spec.text_dims:
                    texts[r] = [text_of[a] for _, a in row]
    out = batch.drop_columns(["vector"])
    renames = {"n_tokens": "query_tokens", "truncated": "query_truncated"}
    out = out.rename_columns([renames.get(c, c) for c in out.column_names])
    for d in spec.dims:
        out = (out.append_column(f"doc_id@{d}", pa.array(ids[d], pa.list_(pa.string())))
               .append_column(f"score@{d}", pa.array(scores[d], pa.list_(pa.float32()))))
    if spec.text_dims:
        out = (out.append_column("doc_id", out.column(f"doc_id@{spec.text_dims}"))
               .append_column("doc_text", pa.array(texts, pa.list_(pa.string()))))
    return out
