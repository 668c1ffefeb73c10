"""Incremental nightly runs (`sink.mode: sync`): only new and changed rows are embedded.

Day 1 embeds a corpus; day 2 adds rows, edits some, removes others. The sync
run must embed exactly the added and edited rows, leave the others where they
were (same fragments, untouched), delete the removed ones, and end equal to a
from-scratch run on day-2 data.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ConfigError
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents

pytestmark = pytest.mark.engine

DAY1 = documents(60)
EDITED = {f"doc-{i:04d}" for i in range(0, 50, 5)}  # 10 rows get new text
REMOVED = {f"doc-{i:04d}" for i in range(50, 60)}  # 10 rows disappear
ADDED = [(f"new-{i:03d}", f"A brand new document number {i} about photosynthesis.") for i in range(15)]
DAY2 = [(i, t + " (edited)" if i in EDITED else t) for i, t in DAY1 if i not in REMOVED] + ADDED


def shards(rows):
    return [pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]}) for part in (rows[:30], rows[30:])]


def vectors(table):
    return dict(zip(table["id"].to_pylist(), np.array(table["vector"].to_pylist(), dtype=np.float32), strict=True))


def stores(tmp_path, request):
    """(source uri for a day, db uri, lance options, job storage options) for local or S3."""
    if request.param == "local":
        def src(day, rows):
            return str(write_shards(tmp_path / day, shards(rows)))
        return src, str(tmp_path / "db"), None, {}
    import pyarrow.parquet as pq
    import s3fs

    ep = request.getfixturevalue("s3_endpoint")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": ep})
    bucket = f"sync-{abs(hash(str(tmp_path))) % 10**8}"
    fs.mkdir(bucket)

    def src(day, rows):
        for i, t in enumerate(shards(rows)):
            with fs.open(f"{bucket}/{day}/part-{i:05d}.parquet", "wb") as f:
                pq.write_table(t, f)
        return f"s3://{bucket}/{day}/"

    lance_opts = {"aws_endpoint": ep, "allow_http": "true", "aws_region": "us-east-1"}
    return src, f"s3://{bucket}/db", lance_opts, {"endpoint_url": ep}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(tmp_path, request):
    return stores(tmp_path, request)


def sync_config(src, db, model, opts, **sink):
    # Simulated engines (vectors a pure function of the token ids): the diff, not the model, is under test.
    raw = job_config(src, db, model, sink={"mode": "sync", "storage_options": opts, **sink},
                     sync={"delete_missing": True}, engine={"backend": "simulated"})
    raw["source"]["storage_options"] = opts
    return raw


def test_day2_sync_embeds_only_what_changed(store, tiny_qwen3, ray_session):
    src, db, lance_opts, opts = store
    day1 = run_job(sync_config(src("day1", DAY1), db, tiny_qwen3, opts))
    assert (day1.rows_new, day1.rows_changed, day1.rows_unchanged, day1.rows_deleted) == (60, 0, 0, 0)
    before = read_table(db, "docs", lance_opts)
    day1_max_fragment = max(f.fragment_id for f in _dataset(db, lance_opts).get_fragments())

    day2 = run_job(sync_config(src("day2", DAY2), db, tiny_qwen3, opts))
    assert (day2.rows_new, day2.rows_changed, day2.rows_unchanged, day2.rows_deleted, day2.rows_rejected) == (
        15, 10, 40, 10, 0)
    after = read_table(db, "docs", lance_opts)
    assert sorted(after["id"].to_pylist()) == sorted(i for i, _ in DAY2)

    # the engine saw only the 25 new and edited rows: their tokens are all the run counted
    n_tok = dict(zip(after["id"].to_pylist(), after["n_tokens"].to_pylist(), strict=True))
    embedded = {i for i, _ in ADDED} | EDITED
    assert day2.rows_written == 25
    assert day2.tokens == sum(n_tok[i] for i in embedded)

    # unchanged rows were not rewritten: same vectors, still in day-1 fragments
    old, new = vectors(before), vectors(after)
    ds = _dataset(db, lance_opts)
    where = ds.scanner(columns=["id"], with_row_address=True).to_table()
    frag_of = dict(zip(where["id"].to_pylist(), (where["_rowaddr"].to_numpy() >> 32).tolist(), strict=True))
    for i, _ in DAY2:
        if i not in embedded:
            np.testing.assert_array_equal(new[i], old[i])
            assert frag_of[i] <= day1_max_fragment
        else:
            assert frag_of[i] > day1_max_fragment

    # equal to a from-scratch run on day-2 data
    scratch = run_job(sync_config(src("day2", DAY2), db + "_scratch", tiny_qwen3, opts))
    assert scratch.rows_new == len(DAY2)
    ref = vectors(read_table(db + "_scratch", "docs", lance_opts))
    assert set(ref) == set(new)
    for k, v in ref.items():
        np.testing.assert_allclose(new[k], v, atol=1e-5)
    fp = dict(zip(after["id"].to_pylist(), after["fingerprint"].to_pylist(), strict=True))
    ref_table = read_table(db + "_scratch", "docs", lance_opts)
    assert fp == dict(zip(ref_table["id"].to_pylist(), ref_table["fingerprint"].to_pylist(), strict=True))

    # a third night with nothing changed embeds nothing
    day3 = run_job(sync_config(src("day2", DAY2), db, tiny_qwen3, opts))
    assert (day3.rows_written, day3.rows_unchanged, day3.tokens) == (0, len(DAY2), 0)


def test_sync_refuses_another_model_setting(tiny_qwen3, ray_session, tmp_path):
    src = write_shards(tmp_path / "src", shards(DAY1))
    run_job(sync_config(src, tmp_path / "db", tiny_qwen3, {}))
    with pytest.raises(ConfigError, match="model.dimensions: the existing table docs was embedded with dimensions=128"):
        run_job(sync_config(src, tmp_path / "db", tiny_qwen3, {}) | {"model": {"name": str(tiny_qwen3),
                                                                            "dimensions": 64}})


@pytest.mark.kill
def test_killed_sync_run_resumes_to_the_same_table(tiny_qwen3, ray_session, tmp_path):
    import signal

    from tests.processes import finish, run_cli

    raw1 = sync_config(write_shards(tmp_path / "day1", shards(DAY1)), tmp_path / "db", tiny_qwen3, {})
    run_job(raw1)
    raw2 = sync_config(write_shards(tmp_path / "day2", shards(DAY2)), tmp_path / "db", tiny_qwen3, {},
                       rows_per_fragment=4, commit_every_rows=5)
    raw2["engine"]["batch_tokens"] = 256
    assert finish(run_cli(raw2, tmp_path, kill_at="mid_commit:2")) == -signal.SIGKILL
    assert finish(run_cli(raw2, tmp_path)) == 0
    after = read_table(str(tmp_path / "db"), "docs")
    ids = after["id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == {i for i, _ in DAY2}

    scratch = run_job(sync_config(write_shards(tmp_path / "day2b", shards(DAY2)), tmp_path / "scratch",
                                  tiny_qwen3, {}))
    assert scratch.rows_new == len(DAY2)
    ref = vectors(read_table(str(tmp_path / "scratch"), "docs"))
    got = vectors(after)
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, atol=1e-5)


def _dataset(db, opts):
    import lance

    return lance.dataset(f"{db}/docs.lance", storage_options=opts)
