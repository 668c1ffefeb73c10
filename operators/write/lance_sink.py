"""Two-phase writes to LanceDB: workers write Lance fragments, one committer on the driver commits them.

`LanceFragmentWriter` column contract:
- needs `id`, `vector`, `reject_reason`, `action`, `old_fragment`, `source_shard`, `source_row`,
  `n_tokens`, `truncated`, `text_hash`, `fingerprint` and the copied source columns; `old_row`
  where sync has `columns` rows (their stored vector is read back from there, bytes unchanged);
  `unchanged_rows` where a sync night folded its unchanged rows (operators/prepare/unchanged_tally.py).
- returns one report row per kind of row it saw: `table` ("main": embedded rows written;
  "rejected": rejected rows written; "unchanged": rows the table already holds, nothing
  written), `fragments` (JSON list of Lance fragment metadata), `rows`, `tokens`,
  `counts` (JSON: rejection reasons, or new / changed / unchanged), `progress` (JSON row
  ranges per shard these fragments hold; empty for unchanged rows, which a resumed run
  re-checks), `replaces` (JSON {old fragment id: [ids]} whose old vectors the new ones replace).

Nothing a worker writes is visible until `LanceCommitter` (lance_committer.py) commits it, so a killed
job leaves at most unreferenced files, never a half-visible batch. Ray's own
`write_lance` is not used: it breaks on pylance 14 and commits only at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.prepare.unchanged_tally import unchanged_count
from operators.write.progress import Progress, dumps, progress_of

# CPUs each writer task reserves. A fragment write is Arrow encoding and I/O: ~8 us of CPU per row against
# ~100 for tokenising (docs/benchmark.md, per-stage cost). A whole CPU per write would keep that CPU from the
# tokenizer tasks on every node, and on a small node leave a core idle while the writes queue behind them.
WRITER_CPUS = 0.25


def fragment_writer() -> Any:
    """`lance.fragment.write_fragments`, with Lance's per-fragment warning silenced in this process.

    Lance's Rust logger reads LANCE_LOG once, when `lance` is first imported in a process, and warns
    "No existing dataset ... will be created" for every new fragment. It is set here rather than as
    the writer stage's runtime_env: a task with an env of its own cannot run on an idle worker, so the
    writer, the last stage, would wait for a fresh worker process at the end of every run.
    A LANCE_LOG the user set is kept.
    """
    os.environ.setdefault("LANCE_LOG", "error")
    from lance.fragment import write_fragments

    return write_fragments

METADATA_KEY = b"batch_embed"

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("source_shard", pa.string()),
        pa.field("source_row", pa.int64()),
    ]
)


def main_schema(dimensions: int, vector_dtype: str, extra_fields: list[pa.Field],
                provenance: dict[str, Any]) -> pa.Schema:
    """The vector table's schema; `provenance` (model, instruction, dimensions...) goes in its metadata."""
    value_type = pa.float16() if vector_dtype == "float16" else pa.float32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(value_type, dimensions)),
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
    rejected_schema: pa.Schema = REJECTED_SCHEMA
    read_version: int | None = None  # the main table's version the run was planned on (row addresses hold there)
    max_rows_per_file: int = 10_000  # sink.rows_per_fragment
    # overwrite: the fragments replace the table, whose schema may differ (another model's size, vector dtype or
    # columns); Lance checks appended fragments against the current schema, which would fail after the embedding.
    replaces: bool = False


class LanceFragmentWriter:
    """Writes each batch's good rows to the vector table and its rejected rows to `<table>_rejected`."""

    REQUIRED = (
        "id",
        "vector",
        "reject_reason",
        "action",
        "old_fragment",
        "source_shard",
        "source_row",
        "n_tokens",
        "truncated",
        "text_hash",
        "fingerprint",
    )

    def __init__(self, spec: SinkSpec, ledger: Any = None):
        self.spec = spec
        self.ledger = ledger  # the run's TimeLedger (operators/infer/engine_clock.py): seconds spent writing
        prov = read_provenance(spec.schema) or {}
        self._constants = {
            "embed_model": prov.get("model"),
            "embed_input_type": prov.get("input_type"),
            "embed_instruction": prov.get("instruction"),
            "embed_dimensions": prov.get("dimensions"),
            "embed_max_tokens": prov.get("max_tokens"),
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.monotonic()
        out = self._write(batch)
        if self.ledger is not None:
            self.ledger.write.remote(time.monotonic() - started)
        return out

    def _write(self, batch: pa.Table) -> pa.Table:
        write_fragments = fragment_writer()
        require_columns(batch, self.REQUIRED, "LanceFragmentWriter")
        opts = self.spec.storage_options or None
        action = batch.column("action")
        rejected_mask = pc.is_valid(batch.column("reject_reason"))
        good = batch.filter(pc.is_in(action, pa.array(["new", "changed"])))
        recolumned = batch.filter(pc.fill_null(pc.equal(action, "columns"), False))
        bad = batch.filter(rejected_mask)
        same = batch.filter(pc.fill_null(pc.equal(action, "unchanged"), False))
        reports = []
        if good.num_rows or recolumned.num_rows:
            tokens = int(pc.sum(good.column("n_tokens")).as_py() or 0)  # engine work: not the copied vectors
            if recolumned.num_rows:
                good = pa.concat_tables([good, self._stored_vectors(recolumned).select(good.column_names)])
            frags = write_fragments(self._main_rows(good), self.spec.main_uri, schema=self.spec.schema,
                                    max_rows_per_file=self.spec.max_rows_per_file, storage_options=opts,
                                    mode="overwrite" if self.spec.replaces else "append")
            replaces: dict[int, list[str]] = {}
            for row_id, frag in zip(good.column("id").to_pylist(), good.column("old_fragment").to_pylist(),
                                    strict=True):
                if frag is not None:
                    replaces.setdefault(int(frag), []).append(row_id)
            reports.append(_report("main", good, frags, tokens, Counter(good.column("action").to_pylist()),
                                   replaces=replaces))
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
            frags = write_fragments(table, self.spec.rejected_uri, schema=REJECTED_SCHEMA,
                                    max_rows_per_file=self.spec.max_rows_per_file, storage_options=opts)
            reasons = Counter(r.split(":", 1)[0] for r in bad.column("reject_reason").to_pylist())
            reports.append(_report("rejected", bad, frags, 0, reasons))
        if same.num_rows:
            # Not recorded as progress: a resumed run re-checks them (cheap) and so sees every live id.
            n = unchanged_count(same)  # a sync night folds them into one row per batch (unchanged_tally.py)
            reports.append(writer_report("unchanged", n, [], 0, Counter(unchanged=n), {}))
        return pa.Table.from_pylist(reports, schema=WRITER_OUTPUT_SCHEMA)

    def _stored_vectors(self, rows: pa.Table) -> pa.Table:
        """`rows` (action `columns`) with the vector, token count and cut flag the table holds for them."""
        import lance

        ds = lance.dataset(self.spec.main_uri, version=self.spec.read_version,
                           storage_options=self.spec.storage_options or None)
        stored = ds._take_rows(rows.column("old_row").to_pylist(), columns=["vector", "n_tokens", "truncated"])
        for name in ("vector", "n_tokens", "truncated"):
            i = rows.schema.get_field_index(name)
            rows = rows.set_column(i, rows.schema.field(i), stored.column(name).cast(rows.schema.field(i).type))
        return rows

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
        pa.field("counts", pa.string()),
        pa.field("progress", pa.string()),
        pa.field("replaces", pa.string()),
    ]
)


def _report(table: str, rows: pa.Table, fragments: list[Any], tokens: int, counts: Counter,
            replaces: dict[int, list[str]] | None = None) -> dict[str, Any]:
    covered = progress_of(rows.column("source_shard").to_pylist(), rows.column("source_row").to_pylist())
    return writer_report(table, rows.num_rows, fragments, tokens, counts, covered, replaces)


def writer_report(table: str, rows: int, fragments: list[Any], tokens: int, counts: Counter, covered: Progress,
                  replaces: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """One row of WRITER_OUTPUT_SCHEMA, what the committer reads (every job's writer reports this way)."""
    return {
        "table": table,
        "fragments": json.dumps([f.to_json() for f in fragments]),
        "rows": rows,
        "tokens": tokens,
        "counts": json.dumps(dict(counts)),
        "progress": dumps(covered),
        "replaces": json.dumps(replaces or {}),
    }
