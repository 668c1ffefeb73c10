"""Parquet shards (local or S3 through s3fs) as a Ray Data source with a fixed column contract.

Output columns (every block, whatever the shard's own types):
- `id`: string; the source id as text (integers are written in decimal), null if unusable.
- `text`: string; the text to embed, null if unusable.
- `source_shard`: string; the shard's path, for error messages and the rejected table.
- `source_row`: int64; the row's position inside its shard.
- `reject_reason`: string; null, or why the row cannot be embedded (type-level problems).
- the configured extra columns, cast to the types of the first shard.

Type problems are settled here, per block, so that downstream operators see one
schema (Ray concatenates blocks from different shards into one batch).
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from operators import faults
from operators.read.shard_reads import RetryPolicy, ShardReadError, read_batches, read_metadata
from operators.write.progress import count_in, in_ranges

STREAM_COLUMNS = ("id", "text", "source_shard", "source_row", "reject_reason")


class SourceError(ValueError):
    """A problem with the source as a whole or with a named shard."""


@dataclass(frozen=True)
class BadShard:
    """A shard the job cannot use (not Parquet, truncated, missing a column); `reason` names it."""

    path: str
    reason: str


@dataclass(frozen=True)
class ShardInfo:
    path: str  # as the user would write it (s3://... or a local path)
    num_rows: int
    row_group_rows: tuple[int, ...]
    schema: pa.Schema


def _fs_path(fs: Any, path: str) -> str:
    return fs._strip_protocol(path)


def open_filesystem(uri: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for a URI (s3fs for s3://) and the protocol prefix to put back on paths."""
    import fsspec.core

    from operators.storage import fsspec_options

    fs, _ = fsspec.core.url_to_fs(uri, **fsspec_options(uri, storage_options))
    prefix = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    return fs, prefix


def list_shards(uri: str, storage_options: dict[str, Any], setting: str = "source.uri") -> tuple[Any, list[str]]:
    """All Parquet files under a folder / prefix, or matching a glob, or the one file named; sorted.

    `setting`: the config key named in the error (each job calls its input differently)."""
    fs, prefix = open_filesystem(uri, storage_options)
    stripped = _fs_path(fs, uri)
    if globlib.has_magic(stripped):
        found = fs.glob(stripped)
    elif fs.isdir(stripped):
        found = [p for p in fs.find(stripped) if p.endswith((".parquet", ".parq", ".pq"))]
    elif fs.isfile(stripped):
        found = [stripped]
    else:
        found = []
    files = sorted(p for p in found if fs.isfile(p))
    if not files:
        raise SourceError(f"{setting}: no Parquet files found at {uri}")
    return fs, [prefix + p if prefix and not p.startswith(prefix) else p for p in files]


def inspect_shards(fs: Any, paths: list[str], policy: RetryPolicy | None = None,
                   threads: int = 16) -> tuple[list[ShardInfo], list[BadShard]]:
    """Read every shard's footer (schema, row counts) in parallel.

    A file that is not Parquet (or is truncated: the footer is at the end) comes back as a BadShard;
    storage that stays unreachable past the retry budget raises SourceError naming the shard."""
    policy = policy or RetryPolicy()

    def one(path: str) -> ShardInfo | BadShard:
        try:
            meta = read_metadata(fs, path, policy)
        except ShardReadError as err:
            if err.unreachable:
                raise SourceError(str(err)) from err
            return BadShard(path, str(err))
        rg = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        return ShardInfo(path=path, num_rows=meta.num_rows, row_group_rows=rg, schema=meta.schema.to_arrow_schema())

    with ThreadPoolExecutor(max_workers=min(threads, max(1, len(paths)))) as pool:
        found = list(pool.map(one, paths))
    return [s for s in found if isinstance(s, ShardInfo)], [s for s in found if isinstance(s, BadShard)]


def source_columns(id_column: str, text_column: str, extra: list[str]) -> list[tuple[str, str]]:
    """The embedding source's (setting, column) pairs."""
    return [("source.id_column", id_column), ("source.text_column", text_column)] + [
        ("source.columns", c) for c in extra
    ]


def shards_missing_columns(shards: list[ShardInfo], columns: list[tuple[str, str]]) -> list[BadShard]:
    """The shards that lack one of the (setting, column) pairs, each with the first it lacks."""
    bad = []
    for shard in shards:
        for setting, col in columns:
            if col not in shard.schema.names:
                bad.append(BadShard(shard.path, f"{setting}: column {col!r} is missing from source shard "
                                                f"{shard.path} (it has {shard.schema.names})"))
                break
    return bad


def output_schema(extra_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("source_shard", pa.string()),
            pa.field("source_row", pa.int64()),
            pa.field("reject_reason", pa.string()),
            *extra_fields,
        ]
    )


def _as_text(col: pa.ChunkedArray, what: str, integers: bool | None = None) -> tuple[pa.Array, pa.Array]:
    """Cast a column to string; returns (values, reason) with reason set where it cannot be text.

    `integers`: accept integer columns as their decimal text (default: for `id` only).
    """
    n = len(col)
    t = col.type
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(arr, pa.string()), pa.nulls(n, pa.string())
    if pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        return pc.cast(pc.dictionary_decode(arr), pa.string()), pa.nulls(n, pa.string())
    if (what == "id" if integers is None else integers) and pa.types.is_integer(t):
        return pc.cast(arr, pa.string()), pa.nulls(n, pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        values, reasons = [], []
        for b in arr.to_pylist():
            if b is None:
                values.append(None)
                reasons.append(None)
                continue
            try:
                values.append(b.decode("utf-8"))
                reasons.append(None)
            except UnicodeDecodeError:
                values.append(None)
                reasons.append(f"{what}_not_utf8")
        return pa.array(values, pa.string()), pa.array(reasons, pa.string())
    # Not text at all (numbers, lists, structs...): every non-null value is rejected.
    reason = pc.if_else(pc.is_null(arr), pa.scalar(None, pa.string()), pa.scalar(f"{what}_not_string:{t}"))
    return pa.nulls(n, pa.string()), reason


def normalize_block(
    table: pa.Table,
    shard: str,
    first_row: int,
    id_column: str,
    text_column: str,
    extra_fields: list[pa.Field],
) -> pa.Table:
    """One shard block -> the fixed stream schema (see module docstring)."""
    n = table.num_rows
    ids, id_reason = _as_text(table.column(id_column), "id")
    texts, text_reason = _as_text(table.column(text_column), "text")
    reason = pc.coalesce(id_reason, text_reason)
    columns: list[Any] = [
        ids,
        texts,
        pa.array([shard] * n, pa.string()),
        pa.array(range(first_row, first_row + n), pa.int64()),
        reason,
    ]
    for f in extra_fields:
        try:
            columns.append(pc.cast(table.column(f.name), f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SourceError(
                f"source.columns: column {f.name!r} of source shard {shard} has type "
                f"{table.schema.field(f.name).type}, which does not convert to {f.type} ({err})"
            ) from err
    return pa.Table.from_arrays(columns, schema=output_schema(extra_fields))


def named_errors(batches: Iterator[Any]) -> Iterator[Any]:
    """Read errors as SourceError (one type the job reports and exits on), naming the shard."""
    try:
        yield from batches
    except ShardReadError as err:
        raise SourceError(str(err)) from None


class ParquetShardSource(Datasource):
    """Read tasks over contiguous row-group ranges of each shard, so big shards read in parallel."""

    def __init__(
        self,
        fs: Any,
        shards: list[ShardInfo],
        id_column: str,
        text_column: str,
        extra_columns: list[str],
        rows_per_block: int = 4096,
        rows_per_task: int = 200_000,
        done: dict[str, list[list[int]]] | None = None,
        retry: RetryPolicy | None = None,
    ):
        self._fs = fs
        self._shards = shards
        self._id_column = id_column
        self._text_column = text_column
        first = shards[0].schema
        # A copied column named like a stream column is the text column itself: the stream carries it.
        self._extra_fields = [first.field(c) for c in extra_columns if c not in STREAM_COLUMNS]
        self._rows_per_block = rows_per_block
        self._rows_per_task = rows_per_task
        self._done = done or {}
        self._retry = retry or RetryPolicy()

    @property
    def schema(self) -> pa.Schema:
        return output_schema(self._extra_fields)

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(s.num_rows for s in self._shards) * 512

    def _ranges(self) -> list[tuple[ShardInfo, list[int], int]]:
        """(shard, row-group indices, first row) per read task; units already committed are left out."""
        out = []
        for shard in self._shards:
            groups: list[int] = []
            start = rows = 0
            for i, n in enumerate(shard.row_group_rows):
                if groups and rows + n > self._rows_per_task:
                    out.append((shard, groups, start))
                    start += rows
                    groups, rows = [], 0
                groups.append(i)
                rows += n
            if groups:
                out.append((shard, groups, start))
        return [u for u in out if not self._all_done(*u)]

    def _all_done(self, shard: ShardInfo, groups: list[int], first_row: int) -> bool:
        n = sum(shard.row_group_rows[g] for g in groups)
        return count_in(self._done.get(shard.path, []), first_row, first_row + n) == n

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        fs, id_col, text_col = self._fs, self._id_column, self._text_column
        extra_fields, block_rows, done, retry = self._extra_fields, self._rows_per_block, self._done, self._retry
        columns = list(dict.fromkeys([id_col, text_col, *[f.name for f in extra_fields]]))
        tasks = []
        for shard, groups, first_row in self._ranges():
            skip = done.get(shard.path, [])
            num_rows = sum(shard.row_group_rows[g] for g in groups)
            num_rows -= count_in(skip, first_row, first_row + num_rows)

            def read(shard=shard, groups=groups, first_row=first_row, skip=skip) -> Iterator[pa.Table]:
                faults.point("read_shard")
                row = first_row
                batches = read_batches(fs, shard.path, retry, columns=columns, batch_size=block_rows,
                                       row_groups=groups)
                for batch in named_errors(batches):
                    table = pa.Table.from_batches([batch])
                    block = normalize_block(table, shard.path, row, id_col, text_col, extra_fields)
                    row += table.num_rows
                    if skip:  # rows a killed attempt of this run already committed
                        keep = ~in_ranges(block.column("source_row").to_numpy(), skip)
                        block = block.filter(pa.array(keep))
                    if block.num_rows:
                        yield block

            meta = BlockMetadata(num_rows=num_rows, size_bytes=None, exec_stats=None, input_files=(shard.path,))
            tasks.append(ReadTask(read, meta, schema=self.schema))
        return tasks
