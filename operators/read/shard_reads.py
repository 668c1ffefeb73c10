"""Reading Parquet shards through flaky object storage: retry with backoff, resume where the read stopped.

s3fs and botocore retry a few times within seconds; an endpoint that restarts
or a network blip of a minute outlasts that. Reads here retry transient errors
(connection refused or reset, timeouts) with exponential backoff up to a budget
of attempts and seconds, reopening the file and skipping the rows already
handed on, so a block is never yielded twice. A file that is not Parquet, is
truncated or is missing is not transient: it fails at once, naming the shard.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("batch_embed")
T = TypeVar("T")

_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class ShardReadError(ValueError):
    """A shard could not be read: its bytes are not Parquet (`unreachable` False), or storage stayed
    unreachable past the retry budget (`unreachable` True)."""

    def __init__(self, message: str, unreachable: bool):
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10  # tries in all, the first included
    max_seconds: float = 300.0  # no new try starts after this long since the first failure
    first_wait: float = 0.5
    max_wait: float = 30.0

    def wait(self, failures: int) -> float:
        """Backoff before try `failures + 1`: exponential with jitter (many readers fail together)."""
        return min(self.max_wait, self.first_wait * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)


def is_transient(err: BaseException) -> bool:
    """Errors of the storage path (network, endpoint) rather than of the file's content."""
    if isinstance(err, _PERMANENT) or isinstance(err, pa.lib.ArrowException):
        return False  # pyarrow re-raises the file object's own errors, so its own are about the bytes
    if isinstance(err, (OSError, TimeoutError)):  # ConnectionError, aiohttp's connector errors
        return True
    return type(err).__module__.split(".")[0] in ("botocore", "aiohttp", "urllib3")


def with_retries(what: str, policy: RetryPolicy, attempt: Callable[[], T]) -> T:
    """`attempt()` until it succeeds or the budget is spent; `what` names the shard in errors."""
    failures, first_failure = 0, 0.0
    while True:
        try:
            return attempt()
        except Exception as err:  # noqa: BLE001 - classified below
            failures, first_failure = _after_failure(what, policy, err, failures, first_failure)


def _after_failure(what: str, policy: RetryPolicy, err: Exception, failures: int,
                   first_failure: float) -> tuple[int, float]:
    """Sleep before the next try, or raise the error that names the shard."""
    if not is_transient(err):
        raise ShardReadError(f"source shard {what}: cannot be read as Parquet ({type(err).__name__}: {err})",
                             unreachable=False) from err
    now = time.monotonic()
    first_failure = first_failure or now
    failures += 1
    pause = policy.wait(failures)
    if failures >= policy.attempts or now + pause - first_failure > policy.max_seconds:
        raise ShardReadError(
            f"source shard {what}: storage unreachable after {failures} tries over {now - first_failure:.0f} s "
            f"({type(err).__name__}: {err}); committed rows are kept, re-run the job to resume",
            unreachable=True,
        ) from err
    log.warning("source shard %s: %s: %s; retry %d/%d in %.1f s", what, type(err).__name__, err, failures,
                policy.attempts - 1, pause)
    time.sleep(pause)
    return failures, first_failure


def read_metadata(fs: Any, path: str, policy: RetryPolicy) -> pq.FileMetaData:
    def attempt() -> pq.FileMetaData:
        with fs.open(fs._strip_protocol(path), "rb") as f:
            return pq.ParquetFile(f).metadata

    return with_retries(path, policy, attempt)


def read_batches(fs: Any, path: str, policy: RetryPolicy, *, columns: list[str], batch_size: int,
                 row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
    """`ParquetFile.iter_batches` that survives storage outages: on a transient error it waits,
    reopens the file and continues after the last row it yielded.

    One row group is fetched at a time (pyarrow otherwise fetches every requested group before the
    first batch): memory stays at one group, and an outage costs at most one group's re-read."""
    yielded = 0  # rows of this read already handed on
    failures, first_failure = 0, 0.0
    while True:
        try:
            with fs.open(fs._strip_protocol(path), "rb") as f:
                pf = pq.ParquetFile(f)
                seen = 0
                for group in range(pf.num_row_groups) if row_groups is None else row_groups:
                    rows = pf.metadata.row_group(group).num_rows
                    if seen + rows <= yielded:
                        seen += rows  # handed on before the outage: not even fetched again
                        continue
                    for batch in pf.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns):
                        start, seen = seen, seen + batch.num_rows
                        if seen <= yielded:
                            continue
                        batch = batch.slice(max(0, yielded - start))
                        yielded = seen
                        yield batch
            return
        except Exception as err:  # noqa: BLE001 - classified in _after_failure (GeneratorExit is not an Exception)
            failures, first_failure = _after_failure(path, policy, err, failures, first_failure)
