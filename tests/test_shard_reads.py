"""Retrying shard reads: a storage error mid-file costs a wait, never a lost or doubled row.

The flaky file system here is fsspec's local one with an injected fault (the
real endpoint outage is tests/test_faults.py); it lets the resume logic be
checked at every position, in milliseconds.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from operators.read.shard_reads import RetryPolicy, ShardReadError, is_transient, read_batches, read_metadata

FAST = RetryPolicy(attempts=4, max_seconds=5, first_wait=0.001, max_wait=0.002)


class FlakyFS(LocalFileSystem):
    """Local files whose reads fail with ConnectionResetError for the reads listed in `fail_reads`."""

    cachable = False  # fsspec would hand back one shared instance, counters included

    def __init__(self, fail_reads: set[int], error: type[Exception] = ConnectionResetError):
        super().__init__()
        self.fail_reads, self.error, self.reads, self.opens = fail_reads, error, 0, 0

    def open(self, path, mode="rb", **kwargs):
        self.opens += 1
        f = super().open(path, mode, **kwargs)
        fs, real_read = self, f.read

        def read(*args):
            fs.reads += 1
            if fs.reads in fs.fail_reads:
                raise fs.error("connection reset by peer (injected)")
            return real_read(*args)

        f.read = read
        return f


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(1000)]}), path, row_group_size=100)  # 10 groups
    return str(path)


def ids_read(fs, path, policy=FAST):
    return [i for b in read_batches(fs, path, policy, columns=["id"], batch_size=64) for i in b.column(0).to_pylist()]


def test_a_clean_read_gets_every_row_once(shard):
    assert ids_read(FlakyFS(set()), shard) == [str(i) for i in range(1000)]


def test_a_clean_read_fetches_one_row_group_at_a_time(shard):
    fs = FlakyFS(set())
    ids_read(fs, shard)
    assert fs.reads == 11  # the footer, then each of the 10 groups


@pytest.mark.parametrize("fail_at", [{1}, {2}, {3}, {6}, {11}, {4, 9}, {5, 6, 7}])
def test_a_failure_anywhere_resumes_after_the_last_row_handed_on(shard, fail_at):
    fs = FlakyFS(fail_at)
    assert ids_read(fs, shard) == [str(i) for i in range(1000)]
    assert fs.reads > 11  # the faults did fire


def test_outage_longer_than_the_budget_names_the_shard(shard):
    fs = FlakyFS(set(range(3, 100)))
    with pytest.raises(ShardReadError, match=r"source shard .*s.parquet: storage unreachable after 4 tries") as err:
        ids_read(fs, shard)
    assert err.value.unreachable


def test_content_errors_fail_at_once(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    fs = FlakyFS(set())
    with pytest.raises(ShardReadError, match="cannot be read as Parquet") as err:
        read_metadata(fs, str(bad), FAST)
    assert not err.value.unreachable and fs.opens == 1  # one attempt, not four
    with pytest.raises(ShardReadError, match="cannot be read as Parquet"):
        read_metadata(fs, str(tmp_path / "gone.parquet"), FAST)


def test_transient_or_not():
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError()) and is_transient(OSError("EOF"))
    assert not is_transient(FileNotFoundError()) and not is_transient(PermissionError())
    assert not is_transient(pa.ArrowInvalid("Parquet magic bytes not found"))
    assert not is_transient(ValueError("bad"))


def test_backoff_grows_and_is_capped():
    p = RetryPolicy(first_wait=0.5, max_wait=30)
    assert all(0.25 <= p.wait(1) <= 0.5 for _ in range(20))
    assert all(15 <= p.wait(12) <= 30 for _ in range(20))


def test_the_pairs_reader_retries_with_the_jobs_policy(tmp_path):
    """Before: the pairs reader (rerank, mine) ignored the config's retry policy and used the default one."""
    from operators.read.pairs_source import PairColumns, PairsSource
    from operators.read.parquet_source import SourceError, inspect_shards

    path = tmp_path / "pairs.parquet"
    n = 600
    pq.write_table(pa.table({"query_id": [f"q{i // 3}" for i in range(n)], "query": ["what"] * n,
                             "doc_id": [f"d{i}" for i in range(n)], "doc_text": ["text"] * n}),
                   path, row_group_size=100)
    shards, _ = inspect_shards(FlakyFS(set()), [str(path)])

    def pairs_read(fs, policy):
        (task,) = PairsSource(fs, shards, PairColumns(), rows_per_block=64, retry=policy).get_read_tasks(1)
        return sum(len(block.column("doc_id")[i].as_py()) for block in task() for i in range(block.num_rows))

    flaky = FlakyFS({2, 5})
    assert pairs_read(flaky, FAST) == n and flaky.reads > 7  # faults fired, every pair read once
    with pytest.raises(SourceError, match="storage unreachable after 1 tries"):  # the policy given, not the default
        pairs_read(FlakyFS({2}), RetryPolicy(attempts=1, max_seconds=5))
