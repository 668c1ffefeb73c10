"""Reading side without Ray: shard listing, column checks, type normalisation, duplicate registry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.prepare.id_registry import IdRegistry
from operators.read.parquet_source import (
    SourceError,
    inspect_shards,
    list_shards,
    normalize_block,
    shards_missing_columns,
    source_columns,
)
from tests.conftest import write_shards


def test_list_shards_folder_glob_and_file(tmp_path):
    write_shards(tmp_path / "c", [pa.table({"id": ["a"], "text": ["x"]})] * 3)
    (tmp_path / "c" / "notes.txt").write_text("not a shard")
    _, files = list_shards(str(tmp_path / "c"), {})
    assert [f.rsplit("/", 1)[1] for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    _, files = list_shards(str(tmp_path / "c" / "part-0000[12].parquet"), {})
    assert len(files) == 2
    _, files = list_shards(str(tmp_path / "c" / "part-00000.parquet"), {})
    assert len(files) == 1


def test_missing_source_names_the_setting(tmp_path):
    with pytest.raises(SourceError, match="source.uri: no Parquet files found at .*nowhere"):
        list_shards(str(tmp_path / "nowhere"), {})


def test_missing_column_names_column_and_shard(tmp_path):
    write_shards(tmp_path, [pa.table({"id": ["a"], "text": ["x"]}), pa.table({"id": ["b"], "body": ["y"]})])
    fs, files = list_shards(str(tmp_path), {})
    shards, bad = inspect_shards(fs, files)
    assert [s.num_rows for s in shards] == [1, 1] and bad == []
    [missing] = shards_missing_columns(shards, source_columns("id", "text", []))
    assert missing.path.endswith("part-00001.parquet")
    assert re.match(r"source.text_column: column 'text' is missing from source shard .*part-00001", missing.reason)
    [missing] = shards_missing_columns(shards[:1], source_columns("id", "text", ["lang"]))
    assert missing.reason.startswith("source.columns: column 'lang' is missing")


def bad_shard_folder(folder: Path) -> Path:
    """Two good shards and one of each kind of bad one."""
    write_shards(folder, [pa.table({"id": ["a", "b"], "text": ["x", "y"]}), pa.table({"id": ["c"], "text": ["z"]})])
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   folder / "empty-rows.parquet")  # no rows: usable, contributes nothing
    (folder / "zero-bytes.parquet").write_bytes(b"")
    (folder / "not-parquet.parquet").write_bytes(b"id,text\na,hello\n")
    whole = (folder / "part-00000.parquet").read_bytes()
    (folder / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    pq.write_table(pa.table({"id": ["d"], "body": ["no text column"]}), folder / "no-text.parquet")
    return folder


def test_bad_shards_are_named_with_why(tmp_path):
    fs, files = list_shards(str(bad_shard_folder(tmp_path)), {})
    shards, bad = inspect_shards(fs, files)
    bad += shards_missing_columns(shards, source_columns("id", "text", []))
    why = {b.path.rsplit("/", 1)[1]: b.reason for b in bad}
    assert set(why) == {"zero-bytes.parquet", "not-parquet.parquet", "truncated.parquet", "no-text.parquet"}
    for name in ("zero-bytes", "not-parquet", "truncated"):
        assert re.match(rf"source shard .*{name}.parquet: cannot be read as Parquet \(", why[f"{name}.parquet"])
    assert "column 'text' is missing" in why["no-text.parquet"]


def test_scan_input_skips_or_fails_on_bad_shards(tmp_path):
    from jobs.core.config import ConfigError
    from jobs.core.inputs import scan_input

    folder = bad_shard_folder(tmp_path)
    cols = source_columns("id", "text", [])
    _, shards, bad = scan_input(str(folder), {}, cols, "source.uri", "skip")
    assert sorted(s.path.rsplit("/", 1)[1] for s in shards) == ["empty-rows.parquet", "part-00000.parquet",
                                                                  "part-00001.parquet"]
    assert len(bad) == 4
    with pytest.raises(ConfigError) as err:
        scan_input(str(folder), {}, cols, "source.uri", "fail")
    assert len(str(err.value).splitlines()) == 4 and "truncated.parquet" in str(err.value)
    # nothing usable at all is an error even when skipping
    with pytest.raises(ConfigError, match="no usable shard left"):
        scan_input(str(folder / "not-parquet.parquet"), {}, cols, "source.uri", "skip")


def _norm(table, extra=()):
    return normalize_block(table, "s0", 10, "id", "text", list(extra)).to_pydict()


def test_normalize_keeps_strings_and_numbers_rows():
    out = _norm(pa.table({"id": pa.array([7, 8], pa.int64()), "text": ["a", None]}))
    assert out["id"] == ["7", "8"]
    assert out["text"] == ["a", None]
    assert out["source_row"] == [10, 11]
    assert out["source_shard"] == ["s0", "s0"]
    assert out["reject_reason"] == [None, None]


def test_normalize_rejects_non_text_and_bad_utf8_per_row():
    out = _norm(pa.table({"id": ["a", "b", "c"], "text": pa.array([b"ok", b"\xff\xfe", None], pa.binary())}))
    assert out["text"] == ["ok", None, None]
    assert out["reject_reason"] == [None, "text_not_utf8", None]
    out = _norm(pa.table({"id": ["a", "b"], "text": pa.array([1.5, None])}))
    assert out["reject_reason"] == ["text_not_string:double", None]
    out = _norm(pa.table({"id": pa.array([1.5]), "text": ["t"]}))
    assert out["reject_reason"] == ["id_not_string:double"]


def test_normalize_casts_extra_columns_or_names_the_shard():
    field = pa.field("lang", pa.string())
    out = _norm(pa.table({"id": ["a"], "text": ["t"], "lang": pa.array(["en"], pa.large_string())}), [field])
    assert out["lang"] == ["en"]
    with pytest.raises(SourceError, match="column 'n' of source shard s0 has type string"):
        _norm(pa.table({"id": ["a"], "text": ["t"], "n": ["x"]}), [pa.field("n", pa.int64())])


def test_registry_rejects_second_claims_but_not_retries_of_the_same_row():
    reg = IdRegistry()
    h = np.array([1, 2, 3], dtype=np.uint64)
    assert reg.claim(h, np.array([10, 11, 12], dtype=np.uint64)).tolist() == [True, True, True]
    # the same rows again (a retried task) still own their ids; another row does not
    assert reg.claim(h, np.array([10, 11, 99], dtype=np.uint64)).tolist() == [True, True, False]
    # duplicates inside one claim: the first position wins
    assert reg.claim(np.array([5, 5], dtype=np.uint64), np.array([1, 2], dtype=np.uint64)).tolist() == [True, False]


def test_registry_merges_runs_log_structured_and_keeps_every_answer():
    reg = IdRegistry()
    rng = np.random.default_rng(0)
    keys = rng.permutation(np.arange(1, 5001, dtype=np.uint64))
    for chunk in np.array_split(keys, 50):  # 50 claims of 100 new ids each
        assert reg.claim(chunk, chunk * 7).all()
    assert reg.size() == 5000 and len(reg._runs) <= 2 * int(np.log2(50)) + 1  # O(log n) sorted runs
    again = reg.claim(np.array([3, 4, 9999], dtype=np.uint64), np.array([21, 99, 1], dtype=np.uint64))
    assert again.tolist() == [True, False, True]  # same row / another row / a new id
    assert reg.seen(np.array([3, 9999, 10_000], dtype=np.uint64)).tolist() == [True, True, False]


def test_registry_partitions_split_the_hash_space_evenly():
    from operators.prepare.id_registry import partition_of, partitions_for

    assert partitions_for(0, 25) == 1 and partitions_for(100, 25) == 4 and partitions_for(101, 25) == 5
    hashes = np.random.default_rng(1).integers(0, 2**64 - 1, 40_000, dtype=np.uint64)
    parts = partition_of(hashes, 4)
    assert set(parts.tolist()) == {0, 1, 2, 3}
    assert np.bincount(parts).min() > 9_000  # ~10,000 each
    assert (partition_of(hashes, 1) == 0).all()
    assert (partition_of(np.array([0, 2**64 - 1], dtype=np.uint64), 3) == [0, 2]).all()


def test_mark_blank_keeps_the_first_reason_and_names_null_and_blank_text():
    from operators.prepare.pair_marker import mark_pairs
    from operators.prepare.query_marker import mark_queries
    from operators.prepare.row_validator import mark_blank

    reason = pa.array(["bad_utf8", None, None, None, None], pa.string())
    text = pa.array([None, None, "  \t", "", "ok"], pa.string())
    assert mark_blank(reason, text, "null_q", "empty_q").to_pylist() == ["bad_utf8", "null_q", "empty_q", "empty_q",
                                                                        None]
    batch = pa.table({"id": ["a", "b", "c", "d"], "text": ["q", None, " ", "q"], "positive": ["p", "p", "p", ""],
                      "reject_reason": pa.array([None] * 4, pa.string())})
    mined = mark_pairs(batch, "positive")
    assert mined.column("reject_reason").to_pylist() == [None, "null_query", "empty_query", "empty_positive"]
    assert mined.column("action").to_pylist() == ["new", None, None, None]
    queries = mark_queries(batch.drop_columns(["positive"]), frozenset({"a", "b"}))
    assert queries.column("reject_reason").to_pylist() == [None, "null_query", "empty_query", None]
    assert queries.column("action").to_pylist() == ["new", None, None, None]  # "d" is not judged
    assert queries.column("judged").to_pylist() == [True, True, False, False]
