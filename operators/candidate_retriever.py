"""Candidates for each query from a vector table: exact top-k by dot product, with the documents' text.

Column contract:
- needs `vector` (the query's vector, L2-normalised at the table's dimensions; null: no search)
  and `action` (rows whose action is `new` or `changed` are searched).
- adds `doc_id` (list of string), `doc_text` (list of string) and `retrieval_score` (list of
  float32, cosine similarity, best first); null lists on rows not searched.
- drops `vector`; the query embedder's `n_tokens` / `truncated` become `query_tokens` /
  `query_truncated` (the reranker adds its own).

Exact search on purpose: one pass over the table's `vector` column serves a whole batch of
queries (a matrix product per block of the table), so a batch of 1,000 queries costs one
scan, and the result does not depend on an ANN index's recall. The table is read at the
version the run planned against, so candidates do not move while the run writes elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns

REQUIRED = ("vector", "action")
SEARCH_ACTIONS = ("new", "changed")


@dataclass(frozen=True)
class RetrievalSpec:
    uri: str  # the Lance dataset of the vector table
    version: int
    top_k: int
    text_column: str
    id_column: str = "id"
    storage_options: dict[str, str] = field(default_factory=dict)


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


def sort_top_k(scores: np.ndarray, keys: np.ndarray) -> list[list[tuple[float, int]]]:
    """Per row, (score, key) best first, without the -inf padding."""
    out = []
    for s_row, k_row in zip(scores, keys, strict=True):
        order = np.argsort(-s_row, kind="stable")
        out.append([(float(s_row[i]), int(k_row[i])) for i in order if np.isfinite(s_row[i])])
    return out


def exact_top_k(ds, queries: np.ndarray, k: int) -> list[list[tuple[float, int]]]:
    """(cosine, row address) of the k nearest table rows per query, best first; one scan of `vector`."""
    from operators.mrl_retriever import table_blocks, top_k_at_dims  # it builds on this module's helpers

    width = queries.shape[1]
    return top_k_at_dims(table_blocks(ds), queries, k, (width,))[width]


def retrieve_candidates(batch: pa.Table, spec: RetrievalSpec) -> pa.Table:
    """The operator (a plain function: Ray runs it as tasks, each opening the pinned table version)."""
    import lance

    require_columns(batch, REQUIRED, "CandidateRetriever")
    active = pc.and_(pc.is_in(batch.column("action"), pa.array(SEARCH_ACTIONS)),
                     pc.is_valid(batch.column("vector"))).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(active)
    doc_ids: list = [None] * batch.num_rows
    doc_texts: list = [None] * batch.num_rows
    doc_scores: list = [None] * batch.num_rows
    if len(rows):
        ds = lance.dataset(spec.uri, version=spec.version, storage_options=spec.storage_options or None)
        col = batch.column("vector").combine_chunks().take(pa.array(rows))
        queries = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(rows), -1)
        hits = exact_top_k(ds, queries, spec.top_k)
        addresses = sorted({a for row in hits for _, a in row})
        found = ds._take_rows(addresses, columns=[spec.id_column, spec.text_column]) if addresses else None
        by_addr = {}
        if found is not None:
            by_addr = dict(zip(addresses, zip(found.column(spec.id_column).to_pylist(),
                                              found.column(spec.text_column).to_pylist(), strict=True),
                               strict=True))
        for r, row in zip(rows.tolist(), hits, strict=True):
            doc_ids[r] = [str(by_addr[a][0]) for _, a in row]
            doc_texts[r] = [by_addr[a][1] for _, a in row]
            doc_scores[r] = [s for s, _ in row]
    out = batch.drop_columns(["vector"])
    renames = {"n_tokens": "query_tokens", "truncated": "query_truncated"}
    out = out.rename_columns([renames.get(c, c) for c in out.column_names])
    return (
        out.append_column("doc_id", pa.array(doc_ids, pa.list_(pa.string())))
        .append_column("doc_text", pa.array(doc_texts, pa.list_(pa.string())))
        .append_column("retrieval_score", pa.array(doc_scores, pa.list_(pa.float32())))
    )
