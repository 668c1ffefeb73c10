"""Two-phase writes to LanceDB: workers write Lance fragments, one committer on the driver commits them.

`LanceFragmentWriter` column contract:
- needs `id`, `vector`, `reject_reason`, `source_shard`, `source_row`, `n_tokens`, `truncated`,
  `text_hash`, `fingerprint` and the copied source columns.
- returns one row per table it wrote to: `table` ("main" | "rejected"), `fragments`
  (JSON list of Lance fragment metadata), `rows`, `tokens`, `reasons` (JSON counts),
  `progress` (JSON row ranges per shard that these fragments hold).

Nothing a worker writes is visible until `LanceCommitter` (lance_committer.py) commits it, so a killed
job leaves at most unreferenced files, never a half-visible batch. Ray's own
`write_lance` is not used: it breaks on pylance 14 and commits only at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.progress import dumps, progress_of

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

        def covered(rows: pa.Table) -> str:
            return dumps(progress_of(rows.column("source_shard").to_pylist(), rows.column("source_row").to_pylist()))

        if good.num_rows:
            table = self._main_rows(good)
            frags = write_fragments(
                table, self.spec.main_uri, schema=self.spec.schema, storage_options=self.spec.storage_options or None
            )
            tokens = int(pc.sum(good.column("n_tokens")).as_py() or 0)
            out.append(("main", frags, good.num_rows, tokens, {}, covered(good)))
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
            out.append(("rejected", frags, bad.num_rows, 0, dict(reasons), covered(bad)))
        return pa.table(
            {
                "table": [o[0] for o in out],
                "fragments": [json.dumps([f.to_json() for f in o[1]]) for o in out],
                "rows": pa.array([o[2] for o in out], pa.int64()),
                "tokens": pa.array([o[3] for o in out], pa.int64()),
                "reasons": [json.dumps(o[4]) for o in out],
                "progress": [o[5] for o in out],
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
        pa.field("progress", pa.string()),
    ]
)
