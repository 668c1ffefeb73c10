"""Faults with real processes: the S3 endpoint stops and restarts, bad shards, huge and tiny inputs.

Every test accounts for every source row: in the table exactly once, in the
rejected table, or in a shard the job named as skipped. The S3 endpoint is a
moto server in this test process; stopping it refuses connections like a dead
endpoint, and a new server on the same port sees the same buckets (moto keeps
its state per process), like an endpoint coming back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.write.run_ledger import open_dataset, read_ledger
from tests.conftest import job_config, read_table
from tests.corpus import documents
from tests.processes import finish, run_cli

pytestmark = [pytest.mark.faults, pytest.mark.engine]

ROWS = documents(160)


class RestartableS3:
    """A moto S3 server on a fixed loopback port that can be stopped and started again."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None
        self.start()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def s3(tmp_path):
    server = RestartableS3()
    yield server
    server.stop()


def upload_corpus(s3: RestartableS3, tmp: Path) -> tuple[str, dict]:
    """Two shards of 80 rows in row groups of 16 (so a read task reads several times); returns bucket, options."""
    import s3fs

    local = tmp / "src"
    local.mkdir()
    for i in range(2):
        part = ROWS[i * 80:(i + 1) * 80]
        pq.write_table(pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]}),
                       local / f"part-{i:05d}.parquet", row_group_size=16)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3.endpoint})
    bucket = f"faults-{time.monotonic_ns()}"
    fs.mkdir(bucket)
    for f in sorted(local.iterdir()):
        fs.put(str(f), f"{bucket}/src/{f.name}")
    return bucket, {"endpoint_url": s3.endpoint}


def s3_settings(bucket: str, opts: dict, model: Path, retry: dict, lance_retry: dict | None = None) -> dict:
    # Simulated engines: the object store's faults are under test (a real engine start is ~10 s a run).
    raw = job_config(f"s3://{bucket}/src/", f"s3://{bucket}/db", model,
                     engine={"batch_tokens": 512, "backend": "simulated"},
                     sink={"rows_per_fragment": 10, "commit_every_rows": 20})
    raw["source"].update(storage_options=opts, retry=retry)
    raw["sink"]["storage_options"] = {**opts, **(lance_retry or {})}
    raw["engine"]["vllm"] = {"max_num_seqs": 16}
    return raw


def lance_options(s3: RestartableS3) -> dict:
    return {"aws_endpoint": s3.endpoint, "allow_http": "true", "aws_region": "us-east-1"}


def assert_exactly_once(bucket: str, s3: RestartableS3, n: int = 160) -> None:
    ids = read_table(f"s3://{bucket}/db", "docs", lance_options(s3))["id"].to_pylist()
    assert len(ids) == len(set(ids)), "an id was committed twice"
    assert set(ids) == {r[0] for r in ROWS[:n]}, "a row was lost"


def wait_for(marker_glob: str, folder: Path, proc, timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while not (found := sorted(folder.glob(marker_glob))):
        assert proc.poll() is None, f"job ended early:\n{proc.log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{marker_glob} never reached"
        time.sleep(0.05)
    return found[0]


# Read tasks sleep before opening their shard, so the endpoint can be stopped while their reads are due.
# (Mid-file failures are tests/test_shard_reads.py's: s3fs reads these small files in one request.)
READ_PAUSE = "read_shard:1:3"
# Lance's object store retries 10 times over 180 s by default; the tests that keep S3 down shorten that.
SHORT_LANCE_RETRY = {"client_max_retries": "2", "client_retry_timeout": "5"}


def stop_s3_while_reads_are_due(s3: RestartableS3, tmp: Path, model: Path, retry: dict,
                                lance_retry: dict | None = None):
    """Start the job on the S3 corpus and stop the endpoint once its readers are about to open their shards."""
    bucket, opts = upload_corpus(s3, tmp)
    raw = s3_settings(bucket, opts, model, retry=retry, lance_retry=lance_retry)
    proc = run_cli(raw, tmp, pause_at=READ_PAUSE)
    wait_for("read_shard-*", tmp, proc)
    s3.stop()
    return bucket, raw, proc


def test_s3_down_mid_read_and_back_the_run_completes(s3, tiny_qwen3, tmp_path):
    bucket, _, proc = stop_s3_while_reads_are_due(s3, tmp_path, tiny_qwen3, {"attempts": 30, "max_seconds": 120})
    # Longer than botocore's own connection retries (5 tries, jittered backoff: up to ~15 s), so the
    # job's retry is what rides the outage out (asserted below).
    time.sleep(30)
    s3.start()
    assert finish(proc) == 0, proc.log_path.read_text()[-3000:]
    log = proc.log_path.read_text()
    assert "storage unreachable" not in log
    assert "retry 1/29" in log, "the outage never reached a reader"  # the job's own backoff did the work
    assert_exactly_once(bucket, s3)


def test_s3_down_past_the_retry_budget_names_the_shard_and_a_rerun_resumes(s3, tiny_qwen3, tmp_path):
    bucket, raw, proc = stop_s3_while_reads_are_due(s3, tmp_path, tiny_qwen3, {"attempts": 3, "max_seconds": 5},
                                                    SHORT_LANCE_RETRY)
    code = finish(proc)
    log = proc.log_path.read_text()
    s3.start()
    # Nothing was read yet, so a reader gives up first: exit 4, and the last words name its shard.
    assert code == 4, log[-3000:]
    assert re.search(rf"source error:\nsource shard s3://{bucket}/src/part-0000[01].parquet: storage unreachable "
                     r"after \d+ tries", log), log[-3000:]
    assert "re-running the same command resumes" in log, log[-3000:]
    again = run_cli(raw, tmp_path)
    assert finish(again) == 0, again.log_path.read_text()[-3000:]
    assert_exactly_once(bucket, s3)


def test_driver_killed_while_s3_is_down_resumes(s3, tiny_qwen3, tmp_path):
    bucket, raw, proc = stop_s3_while_reads_are_due(s3, tmp_path, tiny_qwen3, {"attempts": 30, "max_seconds": 120})
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    s3.start()
    again = run_cli(raw, tmp_path)
    assert finish(again) == 0, again.log_path.read_text()[-3000:]
    assert_exactly_once(bucket, s3)


def test_s3_down_mid_commit_keeps_the_last_good_version(s3, tiny_qwen3, tmp_path):
    bucket, opts = upload_corpus(s3, tmp_path)
    raw = s3_settings(bucket, opts, tiny_qwen3, retry={"attempts": 3, "max_seconds": 5}, lance_retry=SHORT_LANCE_RETRY)
    proc = run_cli(raw, tmp_path, pause_at="before_commit:2:3")  # the driver, just before its 2nd commit
    wait_for("before_commit-*", tmp_path, proc)
    good = open_dataset(f"s3://{bucket}/db/docs.lance", lance_options(s3))
    good_version, good_rows = good.version, good.count_rows()
    s3.stop()
    code = finish(proc)
    s3.start()
    assert code != 0
    after = open_dataset(f"s3://{bucket}/db/docs.lance", lance_options(s3))
    assert (after.version, after.count_rows()) == (good_version, good_rows)
    ledger = read_ledger(after)
    assert ledger is not None and not ledger.complete
    again = run_cli(raw, tmp_path)
    assert finish(again) == 0, again.log_path.read_text()[-3000:]
    assert_exactly_once(bucket, s3)


def run_main(raw: dict, tmp: Path, capsys) -> tuple[int, str]:
    """`batch-embed embed --config FILE` in this process (the session's Ray): exit code and what it printed."""
    import yaml

    from jobs.cli import main

    cfg = tmp / f"job-{time.monotonic_ns()}.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    code = main(["embed", "--config", str(cfg)])
    out = capsys.readouterr()
    return code, out.out + out.err


def good_and_bad_shards(folder: Path) -> Path:
    """Shards 0-1 good (80 rows), then one of each kind of bad shard and an empty one."""
    from tests.test_source_and_registry import bad_shard_folder

    bad_shard_folder(folder)  # writes part-00000 (2 rows) and part-00001 (1 row) and the bad ones
    for i in range(2):
        part = ROWS[i * 40:(i + 1) * 40]
        pq.write_table(pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]}),
                       folder / f"part-{i:05d}.parquet", row_group_size=16)
    return folder


BAD = {"zero-bytes.parquet", "not-parquet.parquet", "truncated.parquet", "no-text.parquet"}


def test_bad_shards_are_skipped_by_name_and_the_rest_completes(tiny_qwen3, ray_session, tmp_path, capsys):
    src = good_and_bad_shards(tmp_path / "src")
    code, out = run_main(job_config(src, tmp_path / "db", tiny_qwen3), tmp_path, capsys)
    assert code == 5, out[-3000:]
    for name in BAD:
        assert re.search(rf"SKIPPED SHARD  \S+/{name}: ", out), out[-3000:]
    summary = json.loads(sorted((tmp_path / "db" / "_runs").glob("*.json"))[-1].read_text())
    assert {Path(p).name for p in summary["bad_shards"]} == BAD
    assert summary["rows_read"] == summary["rows_written"] == 80 and summary["shards"] == 3
    ids = read_table(str(tmp_path / "db"), "docs")["id"].to_pylist()
    assert sorted(ids) == sorted(r[0] for r in ROWS[:80])


def test_on_bad_shard_fail_stops_before_anything_is_committed(tiny_qwen3, ray_session, tmp_path, capsys):
    src = good_and_bad_shards(tmp_path / "src")
    raw = job_config(src, tmp_path / "db", tiny_qwen3, source={"on_bad_shard": "fail"})
    code, out = run_main(raw, tmp_path, capsys)
    assert code == 2, out[-3000:]
    for name in BAD:
        assert f"/{name}" in out
    assert not (tmp_path / "db").exists()


def test_a_skipped_shard_never_deletes_its_rows_from_a_synced_table(tiny_qwen3, ray_session, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        part = ROWS[i * 40:(i + 1) * 40]
        pq.write_table(pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]}), src / f"part-{i}.parquet")
    raw = job_config(src, tmp_path / "db", tiny_qwen3, sink={"mode": "sync"}, sync={"delete_missing": True})
    assert run_main(raw, tmp_path, capsys)[0] == 0
    # the night after, shard 1 arrives truncated: its 40 rows must stay in the table
    whole = (src / "part-1.parquet").read_bytes()
    (src / "part-1.parquet").write_bytes(whole[: len(whole) // 2])
    code, out = run_main(raw, tmp_path, capsys)
    assert code == 5 and "no deletes: 1 shard(s) skipped" in out, out[-3000:]
    ids = read_table(str(tmp_path / "db"), "docs")["id"].to_pylist()
    assert sorted(ids) == sorted(r[0] for r in ROWS[:80])


def run_watching_memory(raw: dict, tmp: Path, timeout: float = 900) -> tuple[int, float, str]:
    """Run the job's CLI; exit code, the driver's peak RSS in MiB (sampled), and its output."""
    import psutil

    proc = run_cli(raw, tmp)
    driver, peak = psutil.Process(proc.pid), 0
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            peak = max(peak, driver.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    return finish(proc, timeout=5), peak / 2**20, proc.log_path.read_text()


def test_a_50_mb_text_is_cut_and_embedded_in_bounded_memory(tiny_qwen3, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    huge = "lorem ipsum dolor sit amet " * (2 * 1024 * 1024)  # 54 MB
    part = ROWS[:20]
    pq.write_table(pa.table({"id": ["huge"] + [r[0] for r in part], "text": [huge] + [r[1] for r in part]}),
                   src / "part-0.parquet")
    code, peak_mib, out = run_watching_memory(job_config(src, tmp_path / "db", tiny_qwen3), tmp_path)
    assert code == 0, out[-3000:]
    table = read_table(str(tmp_path / "db"), "docs").to_pylist()
    assert len(table) == 21
    row = next(r for r in table if r["id"] == "huge")
    assert row["truncated"] and row["n_tokens"] == 512  # the tiny model's max_position_embeddings
    assert peak_mib < 1500, f"driver peaked at {peak_mib:.0f} MiB"


def test_a_million_tiny_rows_complete_with_a_flat_driver(tiny_qwen3, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    n, shards = 1_000_000, 4
    for s in range(shards):
        ids = [f"r{i:07d}" for i in range(s, n, shards)]
        pq.write_table(pa.table({"id": ids, "text": [f"t {i}" for i in ids]}), src / f"part-{s}.parquet",
                       row_group_size=50_000)
    # The driver's streaming is under test, not the model: an unlimited simulated engine (the real one added
    # ~5 minutes of CI here); every stage around it (read, validate, ids, tokenise, write, commit) is real.
    raw = job_config(src, tmp_path / "db", tiny_qwen3, engine={"batch_tokens": 8192, "backend": "simulated"},
                     sink={"commit_every_rows": 200_000, "rows_per_fragment": 50_000})
    code, peak_mib, out = run_watching_memory(raw, tmp_path, timeout=1500)
    assert code == 0, out[-3000:]
    summary = json.loads(sorted((tmp_path / "db" / "_runs").glob("*.json"))[-1].read_text())
    assert summary["rows_written"] == n and summary["rows_rejected"] == 0
    import lance

    ds = lance.dataset(str(tmp_path / "db" / "docs.lance"))
    assert ds.count_rows() == n
    assert peak_mib < 1500, f"driver peaked at {peak_mib:.0f} MiB"
