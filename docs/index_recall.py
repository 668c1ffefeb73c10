"""Recall@10 of LanceDB's default search per vector index type (docs/benchmark.md, "Vector index").

Usage: .venv/bin/python docs/index_recall.py ROWS DIMS KIND[:PARTITIONS] ...
e.g.   .venv/bin/python docs/index_recall.py 100000 384 IVF_PQ IVF_HNSW_SQ IVF_SQ IVF_SQ:256
Clustered unit vectors, 50 of them as queries; the ANN side is `table.search(q).limit(10)`, nothing else set.
"""

from __future__ import annotations

import shutil
import sys
import time

import lance
import lancedb
import numpy as np
import pyarrow as pa

from operators.write.table_upkeep import index_params

DB = "/tmp/index-recall"


def main(rows: int, dims: int, kinds: list[str]) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(max(40, rows // 500), dims))
    v = centers[rng.integers(0, len(centers), rows)] + 0.5 * rng.normal(size=(rows, dims))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    table = pa.table({"id": [f"r{i}" for i in range(rows)],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dims)})
    queries = v[rng.choice(rows, 50, replace=False)]
    exact = [set(np.argsort(-(v @ q))[:10].tolist()) for q in queries]
    for kind in kinds:
        shutil.rmtree(DB, ignore_errors=True)
        ds = lance.write_dataset(table, f"{DB}/docs.lance")
        params = index_params(rows, dims, kind.split(":")[0])
        if ":" in kind:
            params["num_partitions"] = int(kind.split(":")[1])
        t0 = time.time()
        ds.create_index("vector", name="vector_idx", **params)
        build = time.time() - t0
        docs = lancedb.connect(DB).open_table("docs")
        t0 = time.time()
        hits = []
        for q, want in zip(queries, exact, strict=True):
            got = docs.search(q).limit(10).select(["id"]).to_arrow()["id"].to_pylist()
            hits.append(len({int(g[1:]) for g in got} & want) / 10)
        ms = 1000 * (time.time() - t0) / len(queries)
        uses_index = "ANN" in docs.search(queries[0]).limit(10).explain_plan()
        print(f"{kind:16} {params}  build {build:.1f} s  query {ms:.1f} ms  recall@10 {np.mean(hits):.3f}  "
              f"index used: {uses_index}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
