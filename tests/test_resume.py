"""Kill tests with real processes: a killed job, re-run, ends with every row exactly once.

The job runs as `python -m jobs.embed` in its own process group (so its local
Ray dies with it, as on a preempted machine). It is killed at several points,
including in the middle of a commit, re-run with the same command, and the
result is compared with an uninterrupted run: same ids, same rejected rows,
same vectors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from operators.write.run_ledger import open_dataset, read_ledger
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents
from tests.processes import finish, run_cli

pytestmark = [pytest.mark.kill]

ROWS = documents(160)


def corpus(folder: Path) -> Path:
    tables = []
    for i in range(4):
        part = ROWS[i * 40 : (i + 1) * 40]
        ids = [r[0] for r in part]
        texts = [r[1] for r in part]
        if i == 1:  # bad rows, so the rejected table is committed too
            ids[3], texts[5] = ids[2], ""  # a duplicate id and an empty text
        tables.append(pa.table({"id": ids, "text": texts}))
    return write_shards(folder, tables)


def settings(src, db, model, **sink) -> dict:
    # Simulated engines (vectors a pure function of the token ids, operators/infer/simulated_engine.py): what
    # is under test is the commit / resume machinery around them, and a real engine start costs each of these
    # runs ~10 s more. Real engines are killed in tests/test_rerank_resume.py and tests/test_gate.py.
    return job_config(src, db, model, engine={"batch_tokens": 512, "backend": "simulated"},
                      sink={"rows_per_fragment": 10, "commit_every_rows": 20, **sink})


def table_state(db: str, options: dict | None = None) -> tuple[dict, set]:
    main = read_table(db, "docs", options)
    rejected = read_table(db, "docs_rejected", options)
    ids = main["id"].to_pylist()
    assert len(ids) == len(set(ids)), "an id was committed twice"
    keys = [(r["source_shard"].rsplit("/", 1)[1], r["source_row"], r["reason"]) for r in rejected.to_pylist()]
    assert len(keys) == len(set(keys)), "a rejected row was committed twice"
    return dict(zip(ids, np.array(main["vector"].to_pylist(), dtype=np.float32), strict=True)), set(keys)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_qwen3, ray_session):
    """The uninterrupted run everything is compared with."""
    tmp = tmp_path_factory.mktemp("clean")
    src = corpus(tmp / "src")
    summary = run_job(settings(src, tmp / "db", tiny_qwen3))
    assert summary.rows_written == 158 and summary.rows_rejected == 2
    return table_state(str(tmp / "db"))


def assert_same_as_clean(state, clean):
    vectors, rejected = state
    clean_vectors, clean_rejected = clean
    assert set(vectors) == set(clean_vectors)
    assert rejected == clean_rejected
    for k, v in clean_vectors.items():
        np.testing.assert_allclose(vectors[k], v, atol=1e-5)


@pytest.mark.parametrize("kill_at", ["before_commit:1", "mid_commit:2", "after_commit:3"])
def test_killed_driver_resumes_exactly_once(kill_at, clean, tiny_qwen3, tmp_path):
    src = corpus(tmp_path / "src")
    raw = settings(src, tmp_path / "db", tiny_qwen3)
    assert finish(run_cli(raw, tmp_path, kill_at=kill_at)) == -signal.SIGKILL

    ds = open_dataset(str(tmp_path / "db" / "docs.lance"), None)
    committed = read_ledger(ds) if ds is not None else None
    assert committed is None or not committed.complete

    assert finish(run_cli(raw, tmp_path)) == 0, (tmp_path / "job.yaml").read_text()
    assert_same_as_clean(table_state(str(tmp_path / "db")), clean)
    summary = json.loads(sorted((tmp_path / "db" / "_runs").glob("*.json"))[-1].read_text())
    assert summary["rows_written"] + summary["rows_rejected"] + summary["rows_resumed"] == 160
    if kill_at != "before_commit:1":
        assert summary["rows_resumed"] > 0
    # nothing the killed attempt wrote is left unreferenced
    data = tmp_path / "db" / "docs.lance" / "data"
    referenced = {Path(f.path).name for frag in open_dataset(str(data.parent), None).get_fragments()
                  for f in frag.data_files()}
    assert {p.name for p in data.iterdir()} == referenced


# The driver sleeps after its first commit, so the kills below land mid-run.
PAUSE = "after_commit:1:30"


def wait_for_first_commit(db: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ds = open_dataset(str(db / "docs.lance"), None)
        if ds is not None and ds.count_rows() > 0:
            ledger = read_ledger(ds)
            assert ledger is not None and not ledger.complete
            return
        assert proc.poll() is None, "job ended before its first commit"
        time.sleep(0.1)
    raise AssertionError("no commit within the timeout")


def test_driver_killed_from_outside_resumes(clean, tiny_qwen3, tmp_path):
    src = corpus(tmp_path / "src")
    raw = settings(src, tmp_path / "db", tiny_qwen3)
    proc = run_cli(raw, tmp_path, pause_at=PAUSE)
    wait_for_first_commit(tmp_path / "db", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    assert finish(run_cli(raw, tmp_path)) == 0
    assert_same_as_clean(table_state(str(tmp_path / "db")), clean)


@pytest.mark.parametrize("batch", [2])
def test_killed_embedding_actor_is_replaced_and_nothing_is_lost(batch, clean, tiny_qwen3, tmp_path):
    src = corpus(tmp_path / "src")
    raw = settings(src, tmp_path / "db", tiny_qwen3)
    # the actor stops inside its n-th batch; it is killed right there
    proc = run_cli(raw, tmp_path, pause_at=f"embed_batch:{batch}:5")
    deadline = time.monotonic() + 240
    while not (markers := list(tmp_path.glob("embed_batch-*"))):
        assert proc.poll() is None and time.monotonic() < deadline, f"the actor never reached batch {batch}"
        time.sleep(0.1)
    os.kill(int(markers[0].name.split("-")[1]), signal.SIGKILL)
    assert finish(proc) == 0
    assert_same_as_clean(table_state(str(tmp_path / "db")), clean)


@pytest.mark.s3
def test_killed_driver_resumes_on_s3(clean, s3_endpoint, tiny_qwen3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    bucket = f"resume-{time.monotonic_ns()}"
    fs.mkdir(bucket)
    local = corpus(tmp_path / "src")
    for f in sorted(local.iterdir()):
        fs.put(str(f), f"{bucket}/src/{f.name}")
    opts = {"endpoint_url": s3_endpoint}
    raw = settings(f"s3://{bucket}/src/", f"s3://{bucket}/db", tiny_qwen3)
    raw["source"]["storage_options"] = opts
    raw["sink"]["storage_options"] = opts
    assert finish(run_cli(raw, tmp_path, kill_at="mid_commit:3")) == -signal.SIGKILL
    assert finish(run_cli(raw, tmp_path)) == 0
    lance_opts = {"aws_endpoint": s3_endpoint, "allow_http": "true", "aws_region": "us-east-1"}
    vectors, rejected = table_state(f"s3://{bucket}/db", lance_opts)
    assert_same_as_clean(({k: v for k, v in vectors.items()}, {(s, r, why) for s, r, why in rejected}), clean)


def test_second_writer_fails_at_start_and_first_finishes(clean, tiny_qwen3, tmp_path):
    from operators.write.table_lock import TableLockedError

    src = corpus(tmp_path / "src")
    raw = settings(src, tmp_path / "db", tiny_qwen3)
    first = run_cli(raw, tmp_path, pause_at="after_commit:1:20")
    wait_for_first_commit(tmp_path / "db", first)
    with pytest.raises(TableLockedError, match=r"sink.table: another job is writing this table \(run [0-9a-f]+, "):
        run_job(raw)
    assert finish(first) == 0
    assert_same_as_clean(table_state(str(tmp_path / "db")), clean)
