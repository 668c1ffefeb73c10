"""Reshapes the candidate lists around the Reranker (pure pyarrow functions, run as Ray tasks).

- `cut_candidates` (eval): needs `doc_text`; keeps its first `k` candidates (the reranked depth).
- `positive_first` (mine): needs `positive`, `doc_text`; the positive becomes each row's first pair
  (`doc_text`), so the reranker scores it with the candidates, which move to `candidate_text`.
- `candidates_back` (mine): undoes `positive_first` after the Reranker, dropping its per-pair
  columns except `rerank_score`, whose first element is then the positive's.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns

# What the Reranker adds per pair besides `rerank_score` (infer/reranker.py).
RERANKER_PAIR_COLUMNS = ("rank", "pair_tokens", "pair_reason", "truncated", "n_tokens")


def cut_candidates(batch: pa.Table, k: int) -> pa.Table:
    """Only the first `k` candidates go to the reranker."""
    require_columns(batch, ("doc_text",), "CutCandidates")
    i = batch.schema.get_field_index("doc_text")
    return batch.set_column(i, "doc_text", pc.list_slice(batch.column("doc_text"), 0, k))


def positive_first(batch: pa.Table) -> pa.Table:
    """For reranker scoring: the positive becomes the first pair of each row, candidates follow."""
    require_columns(batch, ("positive", "doc_text"), "PositiveFirst")
    docs = [None if c is None else [p, *c] for p, c in zip(batch.column("positive").to_pylist(),
                                                            batch.column("doc_text").to_pylist(), strict=True)]
    return (batch.rename_columns(["candidate_text" if c == "doc_text" else c for c in batch.column_names])
            .append_column("doc_text", pa.array(docs, pa.list_(pa.string()))))


def candidates_back(batch: pa.Table) -> pa.Table:
    """After the reranker: the candidates' text back under `doc_text`, the reranker's pair columns dropped."""
    require_columns(batch, ("candidate_text", "doc_text"), "CandidatesBack")
    keep = [c for c in batch.column_names if c not in ("doc_text", *RERANKER_PAIR_COLUMNS)]
    batch = batch.select(keep)
    return batch.rename_columns(["doc_text" if c == "candidate_text" else c for c in batch.column_names])
