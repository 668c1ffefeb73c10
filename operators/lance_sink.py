"""Two-phase writes to LanceDB: workers write Lance fragments, one committer on the driver commits them.

`LanceFragmentWriter` column contract:
- needs `id`, `vector`, `reject_reason`, `source_shard`, `source_row`, `n_tokens`, `truncated`,
  `text_hash`, `fingerprint` and the copied source columns.
- returns one row per table it wrote to: `table` ("main" | "rejected"), `fragments`
  (JSON list of Lance fragment metadata), `rows`, `tokens`, `reasons` (JSON counts).

Nothing a worker writes is visible until `LanceCommitter` commits it, so a killed
job leaves at most unreferenced files, never a half-visible batch. Ray's own
`write_lance` is not used: it breaks on pylance 14 and commits only at the end.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns

METADATA_KEY = b"batch_embed"

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("source_shard", pa.string()),
        pa.field("source_row", pa.int64()),
    ]
)


def table_uri(db_uri: str, table: str) -> str:
    """Where LanceDB keeps table `table` of database `db_uri`."""
    return f"{db_uri.rstrip('/')}/{table}.lance"


def main_schema(width: int, vector_dtype: str, extra_fields: list[pa.Field], provenance: dict[str, Any]) -> pa.Schema:
    """The vector table's schema; `provenance` (model, instruction, dimensions...) goes in its metadata."""
    value_type = pa.float16() if vector_dtype == "float16" else pa.float32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(value_type, width)),
            *extra_fields,
            pa.field("text_hash", pa.string()),
            pa.field("fingerprint", pa.string()),
            pa.field("n_tokens", pa.int32()),
            pa.field("truncated", pa.bool_()),
            pa.field("embed_model", pa.string()),
            pa.field("embed_input_type", pa.string()),
            pa.field("embed_instruction", pa.string()),
            pa.field("embed_dimensions", pa.int32()),
            pa.field("embed_max_tokens", pa.int32()),
        ],
        metadata={METADATA_KEY: json.dumps(provenance, sort_keys=True).encode()},
    )


def read_provenance(schema: pa.Schema) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else None


@dataclass(frozen=True)
class SinkSpec:
    main_uri: str
    rejected_uri: str
    schema: pa.Schema
    storage_options: dict[str, str] = field(default_factory=dict)


class LanceFragmentWriter:
    """Writes each batch's good rows to the vector table and its rejected rows to `<table>_rejected`."""

    REQUIRED = (
        "id",
        "vector",
        "reject_reason",
        "source_shard",
        "source_row",
        "n_tokens",
        "truncated",
        "text_hash",
        "fingerprint",
    )

    def __init__(self, spec: SinkSpec):
        self.spec = spec
        prov = read_provenance(spec.schema) or {}
        self._constants = {
            "embed_model": prov.get("model"),
            "embed_input_type": prov.get("input_type"),
            "embed_instruction": prov.get("instruction"),
            "embed_dimensions": prov.get("dimensions"),
            "embed_max_tokens": prov.get("max_tokens"),
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        from lance.fragment import write_fragments

        require_columns(batch, self.REQUIRED, "LanceFragmentWriter")
        rejected_mask = pc.is_valid(batch.column("reject_reason"))
        good = batch.filter(pc.invert(rejected_mask))
        bad = batch.filter(rejected_mask)
        out = []
        if good.num_rows:
            table = self._main_rows(good)
            frags = write_fragments(
                table, self.spec.main_uri, schema=self.spec.schema, storage_options=self.spec.storage_options or None
            )
            tokens = int(pc.sum(good.column("n_tokens")).as_py() or 0)
            out.append(("main", frags, good.num_rows, tokens, {}))
        if bad.num_rows:
            table = pa.table(
                {
                    "id": bad.column("id"),
                    "reason": bad.column("reject_reason"),
                    "source_shard": bad.column("source_shard"),
                    "source_row": bad.column("source_row"),
                },
                schema=REJECTED_SCHEMA,
            )
            frags = write_fragments(
                table, self.spec.rejected_uri, schema=REJECTED_SCHEMA, storage_options=self.spec.storage_options or None
            )
            reasons = Counter(r.split(":", 1)[0] for r in bad.column("reject_reason").to_pylist())
            out.append(("rejected", frags, bad.num_rows, 0, dict(reasons)))
        return pa.table(
            {
                "table": [o[0] for o in out],
                "fragments": [json.dumps([f.to_json() for f in o[1]]) for o in out],
                "rows": pa.array([o[2] for o in out], pa.int64()),
                "tokens": pa.array([o[3] for o in out], pa.int64()),
                "reasons": [json.dumps(o[4]) for o in out],
            },
            schema=WRITER_OUTPUT_SCHEMA,
        )

    def _main_rows(self, good: pa.Table) -> pa.Table:
        schema = self.spec.schema
        n = good.num_rows
        cols = []
        for f in schema:
            if f.name in self._constants:
                cols.append(pa.array([self._constants[f.name]] * n, f.type))
            else:
                cols.append(pc.cast(good.column(f.name), f.type))
        return pa.Table.from_arrays(cols, schema=schema)


WRITER_OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("fragments", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("reasons", pa.string()),
    ]
)


class _TableCommits:
    """Commit state of one Lance table: pending fragments and the version they build on."""

    def __init__(self, uri: str, schema: pa.Schema, replace: bool, storage_options: dict[str, str]):
        self.uri = uri
        self.schema = schema
        self.replace = replace  # first commit is an Overwrite (create / overwrite), later ones Append
        self.storage_options = storage_options or None
        self.pending: list[Any] = []
        self.version: int | None = None
        self.committed_rows = 0
        self.pending_rows = 0

    def commit(self) -> None:
        import lance

        if not self.pending and not (self.replace and self.version is None):
            return
        if self.version is None and self.replace:
            op = lance.LanceOperation.Overwrite(self.schema, self.pending)
            read_version = None
        else:
            op = lance.LanceOperation.Append(self.pending)
            read_version = self.version
        ds = lance.LanceDataset.commit(self.uri, op, read_version=read_version, storage_options=self.storage_options)
        self.version = ds.version
        self.committed_rows += self.pending_rows
        self.pending, self.pending_rows = [], 0


class LanceCommitter:
    """Collects writer outputs on the driver and commits them every N rows / T seconds.

    `overwrite` mode holds everything for one final Overwrite commit, so the
    previous table stays the current version until the new one is complete.
    """

    def __init__(
        self,
        spec: SinkSpec,
        mode: str,
        main_exists: bool,
        rejected_exists: bool,
        commit_every_rows: int,
        commit_every_seconds: float,
    ):
        opts = spec.storage_options
        self.main = _TableCommits(spec.main_uri, spec.schema, mode != "append" or not main_exists, opts)
        self.rejected = _TableCommits(spec.rejected_uri, REJECTED_SCHEMA, mode != "append" or not rejected_exists, opts)
        self.mode = mode
        self.every_rows = commit_every_rows
        self.every_seconds = commit_every_seconds
        self._last_commit = time.monotonic()
        self.tokens = 0
        self.reasons: Counter[str] = Counter()
        self.commits = 0

    def add(self, row: dict[str, Any]) -> None:
        from lance.fragment import FragmentMetadata

        target = self.main if row["table"] == "main" else self.rejected
        target.pending.extend(FragmentMetadata.from_json(json.dumps(f)) for f in json.loads(row["fragments"]))
        target.pending_rows += row["rows"]
        self.tokens += row["tokens"]
        self.reasons.update(json.loads(row["reasons"]))

    def maybe_commit(self) -> bool:
        if self.mode == "overwrite":
            return False
        pending = self.main.pending_rows + self.rejected.pending_rows
        due = time.monotonic() - self._last_commit >= self.every_seconds
        if pending and (pending >= self.every_rows or due):
            self._commit()
            return True
        return False

    def finish(self) -> None:
        self._commit()

    def _commit(self) -> None:
        # Rejected rows first: a crash between the two commits then at worst leaves
        # rows both rejected-and-retried, never vectors without their rejects.
        self.rejected.commit()
        self.main.commit()
        self.commits += 1
        self._last_commit = time.monotonic()

    @property
    def rows_written(self) -> int:
        return self.main.committed_rows

    @property
    def rows_rejected(self) -> int:
        return self.rejected.committed_rows
