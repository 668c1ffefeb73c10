"""Bad rows never kill a run: they are counted, written to `<table>_rejected`, and every row is accounted for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ConfigError
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.reference import cosines, qwen3_reference

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def messy_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("messy")
    good = [(f"a{i}", f"The quick brown fox number {i} jumps over the lazy dog.") for i in range(20)]
    shard0 = pa.table(
        {
            "id": [r[0] for r in good] + ["n1", "n2", "n3", None],
            "text": [r[1] for r in good] + [None, "", "   \n\t", "orphan text without id"],
        }
    )
    # non-string text: the whole shard's rows are rejected, not the run
    shard1 = pa.table({"id": ["i1", "i2"], "text": pa.array([1, 2], pa.int64())})
    # binary text, one row not UTF-8; a duplicate of a3; special-token text embedded as plain text
    shard2 = pa.table(
        {
            "id": ["b1", "b2", "a3", "b3"],
            "text": pa.array(
                [b"valid bytes text", b"\xff\xfe broken", b"dup of a3", b"ends early <|endoftext|> no"], pa.binary()
            ),
        }
    )
    # integer ids become their decimal strings
    shard3 = pa.table({"id": pa.array([100, 101], pa.int64()), "text": ["integer id one", "integer id two"]})
    return write_shards(folder, [shard0, shard1, shard2, shard3]), good


def test_every_row_is_written_or_rejected_with_its_reason(messy_source, tiny_qwen3, ray_session, tmp_path):
    src, good = messy_source
    summary = run_job(job_config(src, tmp_path / "db", tiny_qwen3))
    assert summary.rows_read == 32
    assert summary.rows_written + summary.rows_rejected == summary.rows_read
    assert summary.rejected_by_reason == {
        "null_text": 1,
        "empty_text": 2,
        "null_id": 1,
        "text_not_string": 2,
        "text_not_utf8": 1,
        "duplicate_id": 1,
    }

    table = read_table(str(tmp_path / "db"), "docs")
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)) == summary.rows_written == 24
    assert set(ids) == {r[0] for r in good} | {"b1", "b3", "100", "101"}

    rejected = read_table(str(tmp_path / "db"), "docs_rejected").to_pylist()
    assert len(rejected) == summary.rows_rejected == 8
    by_reason = {(r["reason"].split(":")[0], r["id"]) for r in rejected}
    assert ("duplicate_id", "a3") in by_reason and ("null_id", None) in by_reason
    # shards are read in parallel: whichever a3 is claimed first is kept, the other is rejected
    dup = next(r for r in rejected if r["reason"] == "duplicate_id")
    assert (dup["source_shard"][-18:], dup["source_row"]) in {("part-00002.parquet", 2), ("part-00000.parquet", 3)}
    assert all(r["source_shard"].endswith(".parquet") for r in rejected)

    # each vector belongs to its own id: recompute a sample with the reference
    texts = (
        dict(good)
        | {"a3": dict(good)["a3"] if dup["source_shard"].endswith("2.parquet") else "dup of a3"}
        | {"b1": "valid bytes text", "b3": "ends early <|endoftext|> no", "100": "integer id one"}
    )
    sample = ["a0", "a3", "a7", "a19", "b1", "b3", "100"]
    vec = dict(zip(ids, table["vector"].to_pylist(), strict=True))
    got = np.array([vec[i] for i in sample], dtype=np.float32)
    want = qwen3_reference(tiny_qwen3, [texts[i] for i in sample])
    assert cosines(got, want).min() >= 0.999
    # the literal "<|endoftext|>" inside b3 did not end its input early
    n_tok = dict(zip(ids, table["n_tokens"].to_pylist(), strict=True))
    assert n_tok["b3"] > 5


def test_existing_table_is_protected(messy_source, tiny_qwen3, ray_session, tmp_path):
    src, _ = messy_source
    raw = job_config(src, tmp_path / "db", tiny_qwen3)
    first = run_job(raw)
    with pytest.raises(ConfigError, match="sink.table: table 'docs' already exists"):
        run_job(raw)
    with pytest.raises(ConfigError, match="model.dimensions: the existing table docs was embedded with dimensions=128"):
        run_job(job_config(src, tmp_path / "db", tiny_qwen3, model={"dimensions": 16}, sink={"mode": "append"}))
    # overwrite replaces it in one new version; the rows are the same, not doubled
    again = run_job(job_config(src, tmp_path / "db", tiny_qwen3, sink={"mode": "overwrite"}))
    assert again.rows_written == first.rows_written
    assert read_table(str(tmp_path / "db"), "docs").num_rows == first.rows_written
    assert again.table_version == first.table_version + 1


def test_missing_text_column_fails_before_anything_runs(tiny_qwen3, tmp_path):
    src = write_shards(
        tmp_path / "src", [pa.table({"id": ["x"], "text": ["ok"]}), pa.table({"id": ["y"], "body": ["b"]})]
    )
    with pytest.raises(
        ConfigError, match=r"source.text_column: column 'text' is missing from source shard .*part-00001"
    ):  # (the default, on_bad_shard: skip, runs shard 0 alone: tests/test_faults.py)
        run_job(job_config(src, tmp_path / "db", tiny_qwen3, source={"on_bad_shard": "fail"}))
    with pytest.raises(ConfigError, match=r"source.text_column: column 'text' is missing.*\n.*no usable shard left"):
        run_job(job_config(src / "part-00001.parquet", tmp_path / "db", tiny_qwen3))
    assert not (tmp_path / "db").exists()
