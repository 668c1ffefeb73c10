"""Planning a job's Parquet input on the driver: list and inspect shards, check columns, sample rows.

Runs before Ray or any engine starts: a missing source, a missing column or a bad shard
fails here as a `ConfigError` naming the setting.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from jobs.core.config import ConfigError
from operators.read.parquet_source import (
    BadShard,
    ShardInfo,
    SourceError,
    inspect_shards,
    list_shards,
    shards_missing_columns,
)
from operators.read.shard_reads import RetryPolicy, is_transient
from operators.write import progress as prog

log = logging.getLogger("batch_embed")

SAMPLE_ROWS = 256


class SourceRows:
    """Row counts of a plan over Parquet `shards` writing `target` (embedding and reranking plans)."""

    shards: list[ShardInfo]
    target: Any  # the TableTarget, whose `done` holds what earlier attempts of this run committed

    @property
    def rows_done(self) -> int:
        return prog.total_rows(self.target.done)

    @property
    def total_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)


def scan_input(uri: str, storage_options: dict[str, Any], columns: list[tuple[str, str]], setting: str,
               on_bad_shard: str, retry: RetryPolicy | None = None) -> tuple[Any, list[ShardInfo], list[BadShard]]:
    """List and inspect a job's Parquet input and check its (setting, column) pairs.

    Shards that are not Parquet, truncated or missing a column are `BadShard`s: with
    `on_bad_shard: fail` (or when no shard is usable) they stop the job here, before anything
    is committed; with `skip` they are left out, logged and reported in the summary."""
    try:
        fs, paths = list_shards(uri, storage_options, setting)
        shards, bad = inspect_shards(fs, paths, retry)
    except SourceError as err:
        raise ConfigError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - botocore's connection errors are not OSErrors
        if not isinstance(err, OSError) and not is_transient(err):
            raise
        raise ConfigError(f"{setting}: cannot list {uri}: {type(err).__name__}: {err}") from None
    bad += shards_missing_columns(shards, columns)
    if bad and (on_bad_shard == "fail" or len(bad) == len(paths)):
        why = "" if on_bad_shard == "fail" else f"\n{setting}: no usable shard left (all {len(paths)} are bad)"
        raise ConfigError("\n".join(sorted(b.reason for b in bad)) + why)
    skipped = {b.path for b in bad}
    for b in bad:
        log.warning("skipping %s (source.on_bad_shard: skip)", b.reason)
    return fs, [s for s in shards if s.path not in skipped], sorted(bad, key=lambda b: b.path)


def input_shards(uri: str, storage_options: dict[str, Any], columns: list[tuple[str, str]],
                 setting: str, retry: RetryPolicy | None = None) -> tuple[Any, list[ShardInfo]]:
    """List and inspect a job's Parquet input, every shard must be usable; errors as ConfigError."""
    fs, shards, _ = scan_input(uri, storage_options, columns, setting, "fail", retry)
    return fs, shards


def query_columns(q: Any, section: str = "queries") -> list[tuple[str, str]]:
    """The (setting, column) pairs of a `queries:` section."""
    return [(f"{section}.id_column", q.id_column), (f"{section}.text_column", q.text_column)]


def sample_rows(fs: Any, shard: ShardInfo, columns: list[str], rows: int = SAMPLE_ROWS) -> pa.Table:
    """The first `rows` rows of a shard's `columns` (for batch-size estimates)."""
    import pyarrow.parquet as pq

    with fs.open(fs._strip_protocol(shard.path), "rb") as f:
        batch = next(pq.ParquetFile(f).iter_batches(batch_size=rows, columns=columns), None)
    return pa.Table.from_batches([batch]) if batch is not None else pa.table({c: [] for c in columns})


def mean_chars(col: Any) -> float:
    """Mean length in characters of a text column (0 for an empty or non-text one)."""
    import pyarrow.compute as pc

    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) or not len(col):
        return 0.0
    return float(pc.mean(pc.utf8_length(col)).as_py() or 0.0)
