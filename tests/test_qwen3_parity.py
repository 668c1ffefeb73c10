"""Every vector the job writes with a tiny Qwen3 equals the plain transformers reference.

Documents and instructed queries, at full size and at two Matryoshka sizes,
with texts both shorter and far longer than `max_tokens` (the end token must
survive the cut).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents
from tests.reference import cosines, qwen3_reference

pytestmark = pytest.mark.engine

ROWS = documents(45)
INSTRUCTION = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen-src")
    tables = [
        pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part], "lang": ["en"] * len(part)})
        for part in (ROWS[:15], ROWS[15:30], ROWS[30:])
    ]
    return write_shards(folder, tables)


CASES = {
    "documents-full-cut32": ({"input_type": "document", "max_tokens": 32}, None, 32, 128),
    "queries-mrl64": (
        {"input_type": "query", "instruction": INSTRUCTION, "dimensions": 64, "max_tokens": 40},
        INSTRUCTION,
        40,
        64,
    ),
    "documents-mrl32": ({"input_type": "document", "dimensions": 32, "max_tokens": 48}, None, 48, 32),
}


@pytest.mark.parametrize("case", list(CASES))
def test_job_vectors_match_reference(case, source, tiny_qwen3, ray_session, tmp_path):
    model_cfg, instruction, max_tokens, dims = CASES[case]
    raw = job_config(source, tmp_path / "db", tiny_qwen3, source={"columns": ["lang"]}, model=model_cfg)
    summary = run_job(raw)
    assert summary.rows_written == len(ROWS) and summary.rows_rejected == 0
    assert summary.dimensions == dims

    table = read_table(str(tmp_path / "db"), "docs")
    assert table.schema.field("vector").type == pa.list_(pa.float32(), dims)
    assert sorted(table["id"].to_pylist()) == [r[0] for r in ROWS]
    by_id = dict(zip(table["id"].to_pylist(), np.array(table["vector"].to_pylist(), dtype=np.float32), strict=True))
    got = np.stack([by_id[r[0]] for r in ROWS])
    want = qwen3_reference(
        tiny_qwen3,
        [r[1] for r in ROWS],
        instruction=instruction,
        max_tokens=max_tokens,
        dimensions=dims if dims != 128 else None,
    )
    cos = cosines(got, want)
    assert cos.min() >= 0.999, f"worst row {ROWS[int(cos.argmin())][0]}: cosine {cos.min():.5f}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    # Provenance for later incremental runs, and the cut flags.
    assert set(table["embed_model"].to_pylist()) == {str(tiny_qwen3)}
    assert set(table["embed_instruction"].to_pylist()) == {instruction or ""}
    assert set(table["embed_dimensions"].to_pylist()) == {dims}
    assert max(table["n_tokens"].to_pylist()) <= max_tokens
    long_ids = {r[0] for r in ROWS if len(r[1]) > 1000}
    flags = dict(zip(table["id"].to_pylist(), table["truncated"].to_pylist(), strict=True))
    assert all(flags[i] for i in long_ids)
    assert set(table["lang"].to_pylist()) == {"en"}

    saved = json.loads(open(summary.summary_path).read())
    for key in ("rows_written", "rows_rejected", "tokens", "seconds", "rows_per_s", "tokens_per_s", "table_version"):
        assert key in saved
    assert saved["tokens"] == sum(table["n_tokens"].to_pylist())
