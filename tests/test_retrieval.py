"""Candidate retrieval (operators/retrieve/top_k.py): exact scan, or the table's vector index (`candidates.search`)."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa

from operators.retrieve.top_k import RetrievalSpec, has_vector_index, retrieve_top_k

DIMS = 32


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def table(ids: list[str], vectors: np.ndarray) -> pa.Table:
    return pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIMS)})


def queries(vectors: np.ndarray) -> pa.Table:
    batch = table([f"q{i}" for i in range(len(vectors))], vectors)
    return batch.append_column("action", pa.array(["new"] * len(vectors)))


def test_index_search_finds_what_the_exact_scan_finds_with_exact_scores(tmp_path):
    uri = str(tmp_path / "docs.lance")
    docs = unit(3000, 0)
    lance.write_dataset(table([f"d{i}" for i in range(3000)], docs), uri)
    assert not has_vector_index(lance.dataset(uri))
    lance.dataset(uri).create_index("vector", index_type="IVF_SQ", num_partitions=4, metric="cosine")
    # rows added after the index was trained: not in it, still found (Lance searches them flat)
    late = unit(50, 1)
    ds = lance.write_dataset(table([f"late{i}" for i in range(50)], late), uri, mode="append")
    assert has_vector_index(ds)

    rng = np.random.default_rng(2)
    asked = np.concatenate([docs[:20], late[:5]]) + 0.05 * rng.standard_normal((25, DIMS)).astype(np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    spec = RetrievalSpec(uri=uri, version=ds.version, top_k=10)
    exact = retrieve_top_k(queries(asked), spec)
    index = retrieve_top_k(queries(asked), RetrievalSpec(uri=uri, version=ds.version, top_k=10, search="index"))
    want = [f"d{i}" for i in range(20)] + [f"late{i}" for i in range(5)]
    assert [ids[0] for ids in index.column("doc_id").to_pylist()] == want
    assert [ids[0] for ids in exact.column("doc_id").to_pylist()] == want
    found = shared = 0
    for e_ids, e_scores, i_ids, i_scores in zip(exact["doc_id"].to_pylist(), exact["retrieval_score"].to_pylist(),
                                                index["doc_id"].to_pylist(), index["retrieval_score"].to_pylist(),
                                                strict=True):
        assert i_scores == sorted(i_scores, reverse=True) and len(i_ids) == 10
        exact_of = dict(zip(e_ids, e_scores, strict=True))
        for doc, score in zip(i_ids, i_scores, strict=True):
            if doc in exact_of:  # rescored from the stored vectors: the exact cosine, not the index's estimate
                assert abs(exact_of[doc] - score) < 1e-5
                shared += 1
        found += len(set(i_ids) & set(e_ids))
    assert found / (10 * len(asked)) >= 0.9 and shared == found  # recall@10 of the index against exact
