"""Exact top-k from a vector table for a batch of queries, at one or several Matryoshka sizes, in one scan.

Column contract:
- needs `vector` (the query's vector at the table's full size, L2-normalised; null: no search)
  and `action` (rows whose action is `new` or `changed` are searched).
- adds the candidates at the first size of `spec.dims` (the table's size when empty): `doc_id`
  (list of string, best first), `retrieval_score` (list of float32, cosine) and, when
  `spec.text_column` is set, `doc_text` (list of string: what the Reranker reads).
- with `spec.every_size`, also `doc_id@d` and `score@d` for each size d (what eval ranks).
- null lists on rows not searched; drops `vector`; the query embedder's `n_tokens` /
  `truncated` become `query_tokens` / `query_truncated` (the reranker adds its own).

Exact (`spec.search: exact`): one pass over the table's `vector` column serves a whole batch of
queries (a matrix product per block of the table), and the result does not move with an ANN
index's recall. Every size is scored from the same block: truncating a stored vector and
re-normalising (mrl_truncate) is cheap next to reading it. At 100M rows that pass is what each
batch of queries costs, so `spec.search: index` (what `candidates.search: auto` picks where the
table has a vector index) asks the index instead: one ANN query per query, INDEX_NPROBES
partitions, rows not yet indexed searched flat by Lance, hits rescored exactly from the stored
vectors; candidates can then differ from exact by the index's recall, never by their scores.
Only at the stored size (rerank, mine); eval ranks every size exactly. The table is read at the
version the run planned against, so candidates do not move while the run writes elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.infer.matryoshka import mrl_truncate

REQUIRED = ("vector", "action")
SEARCH_ACTIONS = ("new", "changed")
_BLOCK_ROWS = 16384
INDEX_NPROBES = 20  # LanceDB's default: >= 0.95 of the exact top 10 on upkeep's IVF_SQ (docs/benchmark.md)

Hits = list[list[tuple[float, int]]]  # per query: (cosine, row address), best first


@dataclass(frozen=True)
class RetrievalSpec:
    uri: str  # the Lance dataset of the vector table
    version: int
    top_k: int
    dims: tuple[int, ...] = ()  # Matryoshka sizes to rank at, each <= the stored size; (): the stored size
    text_column: str | None = None  # also return the candidates' text (for reranking, mining)
    every_size: bool = False  # add `doc_id@d` / `score@d` for each size
    id_column: str = "id"
    storage_options: dict[str, str] = field(default_factory=dict)
    search: str = "exact"  # or "index": the table's vector index (resolved from `candidates.search` on the driver)


def merge_top_k(best_scores: np.ndarray, best_keys: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (query), the k highest of the running best and a new block's scores.

    `best_*`: (m, k') so far; `scores`: (m, b) for the block's `keys` (b,). Returns (m, min(k, k'+b))
    unsorted; -inf marks "no candidate".
    """
    all_scores = np.concatenate([best_scores, scores], axis=1)
    all_keys = np.concatenate([best_keys, np.broadcast_to(keys, scores.shape)], axis=1)
    if all_scores.shape[1] <= k:
        return all_scores, all_keys
    top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(all_scores, top, axis=1), np.take_along_axis(all_keys, top, axis=1)


def sort_top_k(scores: np.ndarray, keys: np.ndarray) -> Hits:
    """Per row, (score, key) best first, without the -inf padding."""
    out = []
    for s_row, k_row in zip(scores, keys, strict=True):
        order = np.argsort(-s_row, kind="stable")
        out.append([(float(s_row[i]), int(k_row[i])) for i in order if np.isfinite(s_row[i])])
    return out


def top_k_at_dims(blocks: Iterable[tuple[np.ndarray, np.ndarray]], queries: np.ndarray, k: int,
                  dims: tuple[int, ...]) -> dict[int, Hits]:
    """Per size d: (cosine at d, key) of the k best rows per query, best first.

    `blocks`: iterable of (vectors (b, stored size) float32, keys (b,) int64); `queries`: (m, stored size).
    Pure, so the tests' independent search and this one can be compared on the same input.
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


def table_blocks(ds) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(vectors, row addresses) blocks of a Lance dataset's `vector` column."""
    scan = ds.scanner(columns=["vector"], with_row_address=True, batch_size=_BLOCK_ROWS)
    for batch in scan.to_batches():
        if not batch.num_rows:
            continue
        col = batch.column("vector")
        vectors = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, col.type.list_size)
        yield vectors, batch.column("_rowaddr").to_numpy().astype(np.int64)


def index_top_k(ds, queries: np.ndarray, k: int) -> Hits:
    """Per query, the table's vector index's k nearest rows, rescored exactly (cosine of the stored vectors)."""
    out = []
    for q in queries:
        found = ds.to_table(nearest={"column": "vector", "q": q, "k": k, "nprobes": INDEX_NPROBES},
                            columns=["vector"], with_row_address=True, disable_scoring_autoprojection=True)
        col = found.column("vector").combine_chunks()
        vectors = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(found), -1)
        scores = vectors @ q
        keys = found.column("_rowaddr").to_numpy().astype(np.int64)
        order = np.argsort(-scores, kind="stable")
        out.append([(float(scores[i]), int(keys[i])) for i in order])
    return out


def has_vector_index(ds) -> bool:
    return any(idx.get("fields") == ["vector"] for idx in ds.list_indices())


def retrieve_top_k(batch: pa.Table, spec: RetrievalSpec) -> pa.Table:
    """The operator (a plain function: Ray runs it as tasks, each opening the pinned table version)."""
    import lance

    require_columns(batch, REQUIRED, "TopKRetriever")
    active = pc.and_(pc.is_in(batch.column("action"), pa.array(SEARCH_ACTIONS)),
                     pc.is_valid(batch.column("vector"))).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(active)
    n = batch.num_rows
    dims = spec.dims or (batch.schema.field("vector").type.list_size,)
    ids: dict[int, list] = {d: [None] * n for d in dims}
    scores: dict[int, list] = {d: [None] * n for d in dims}
    texts: list = [None] * n
    if len(rows):
        ds = lance.dataset(spec.uri, version=spec.version, storage_options=spec.storage_options or None)
        col = batch.column("vector").combine_chunks().take(pa.array(rows))
        queries = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(rows), -1)
        if spec.search == "index" and not spec.every_size and dims == (queries.shape[1],):
            hits = {dims[0]: index_top_k(ds, queries, spec.top_k)}
        else:
            hits = top_k_at_dims(table_blocks(ds), queries, spec.top_k, dims)
        addresses = sorted({a for per_dim in hits.values() for row in per_dim for _, a in row})
        columns = [spec.id_column] + ([spec.text_column] if spec.text_column else [])
        found = ds._take_rows(addresses, columns=columns) if addresses else None
        id_of = dict(zip(addresses, found.column(spec.id_column).to_pylist(), strict=True)) if found else {}
        text_of = (dict(zip(addresses, found.column(spec.text_column).to_pylist(), strict=True))
                   if found is not None and spec.text_column else {})
        for d in dims:
            for r, row in zip(rows.tolist(), hits[d], strict=True):
                ids[d][r] = [str(id_of[a]) for _, a in row]
                scores[d][r] = [s for s, _ in row]
                if d == dims[0] and spec.text_column:
                    texts[r] = [text_of[a] for _, a in row]
    out = batch.drop_columns(["vector"])
    renames = {"n_tokens": "query_tokens", "truncated": "query_truncated"}
    out = out.rename_columns([renames.get(c, c) for c in out.column_names])
    out = (out.append_column("doc_id", pa.array(ids[dims[0]], pa.list_(pa.string())))
           .append_column("retrieval_score", pa.array(scores[dims[0]], pa.list_(pa.float32()))))
    if spec.text_column:
        out = out.append_column("doc_text", pa.array(texts, pa.list_(pa.string())))
    if spec.every_size:
        for d in dims:
            out = (out.append_column(f"doc_id@{d}", pa.array(ids[d], pa.list_(pa.string())))
                   .append_column(f"score@{d}", pa.array(scores[d], pa.list_(pa.float32()))))
    return out
