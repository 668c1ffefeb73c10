"""Turn a validated config into a runnable plan, checking what needs the file system or the model.

Runs on the driver in about a second (Parquet footers, the model's config.json,
the sink table's schema): a missing source, a missing column, `dimensions`
larger than the model, or a table that does not match fail here, before Ray or
any engine starts, with the setting's path in the message.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from jobs.config import ConfigError, EmbedJobConfig
from operators import progress as prog
from operators.engine import EngineSpec
from operators.lance_sink import SinkSpec, main_schema, read_provenance, table_uri
from operators.model_spec import ModelNotFoundError, ModelSpec, effective_max_tokens, load_model_spec
from operators.parquet_source import (
    BadShard,
    ShardInfo,
    SourceError,
    inspect_shards,
    list_shards,
    shards_missing_columns,
    source_columns,
)
from operators.run_ledger import max_fragment_id, open_dataset, read_ledger
from operators.shard_reads import RetryPolicy, is_transient
from operators.storage import lance_storage_options
from operators.vectors import Provenance

log = logging.getLogger("batch_embed")

# Rough characters per token, only to size Ray batches near the token budget;
# the embedder splits each batch by exact token counts.
_CHARS_PER_TOKEN = 4.0
_SAMPLE_ROWS = 256


class SourceRows:
    """Row counts of a plan over Parquet `shards` with `done` progress (embedding and reranking plans)."""

    shards: list[ShardInfo]
    done: prog.Progress

    @property
    def rows_done(self) -> int:
        return prog.total_rows(self.done)

    @property
    def total_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)


@dataclass
class EmbedPlan(SourceRows):
    config: EmbedJobConfig
    fs: Any
    shards: list[ShardInfo]
    model: ModelSpec
    max_tokens: int
    width: int
    instruction: str
    provenance: Provenance
    extra_fields: list[pa.Field]
    sink: SinkSpec
    main_version: int | None  # current version of the vector table, None if it does not exist
    rejected_version: int | None
    rows_per_batch: int
    run_id: str
    source_signature: str
    fragment_floor: int  # fragments with a higher id were written by this run
    resuming: bool = False
    done: prog.Progress = field(default_factory=dict)  # rows already committed by this run
    bad_shards: list[BadShard] = field(default_factory=list)  # left out (source.on_bad_shard: skip)

    def engine_spec(self, gpus: float) -> EngineSpec:
        m = self.config.model
        return EngineSpec(
            model_path=self.model.path,
            max_model_len=self.max_tokens,
            dtype=m.dtype.value,
            gpus=gpus,
            trust_remote_code=m.trust_remote_code,
            extra=dict(self.config.engine.vllm),
            cpu_scheduling=self.config.engine.cpu_scheduling.value,
        )


def _check_existing_table(cfg: EmbedJobConfig, schema: pa.Schema, wanted: pa.Schema, uri: str) -> None:
    have = read_provenance(schema)
    want = read_provenance(wanted) or {}
    if have is None:
        raise ConfigError(
            f"sink.table: {uri} was not written by this job (no provenance metadata); "
            "use sink.mode: overwrite or another sink.table"
        )
    for key, setting in [
        ("model", "model.name"),
        ("input_type", "model.input_type"),
        ("instruction", "model.instruction"),
        ("dimensions", "model.dimensions"),
        ("max_tokens", "model.max_tokens"),
        ("vector_dtype", "sink.vector_dtype"),
    ]:
        if have.get(key) != want.get(key):
            raise ConfigError(
                f"{setting}: the existing table {cfg.sink.table} was embedded with {key}={have.get(key)!r}, "
                f"this run would use {want.get(key)!r}; vectors would not be comparable. Use sink.mode: "
                "overwrite to rebuild it, or another sink.table"
            )
    if schema.remove_metadata() != wanted.remove_metadata():
        raise ConfigError(
            f"source.columns: the existing table {cfg.sink.table} has columns {schema.names}, "
            f"this run would write {wanted.names}"
        )


def sample_rows(fs: Any, shard: ShardInfo, columns: list[str], rows: int = _SAMPLE_ROWS) -> pa.Table:
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


def rows_per_batch(plan_fs: Any, shard: ShardInfo, text_column: str, batch_tokens: int) -> int:
    """Ray batch size in rows, so that one batch carries about `batch_tokens` tokens."""
    chars = mean_chars(sample_rows(plan_fs, shard, [text_column]).column(0))
    est_tokens = max(4.0, chars / _CHARS_PER_TOKEN + 2)
    return int(min(8192, max(8, batch_tokens / est_tokens)))


def input_shards(uri: str, storage_options: dict[str, Any], columns: list[tuple[str, str]],
                 setting: str) -> tuple[Any, list[ShardInfo]]:
    """List and inspect a job's Parquet input, every shard must be usable; errors as ConfigError."""
    fs, shards, _ = scan_input(uri, storage_options, columns, setting, "fail")
    return fs, shards


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


def plan_embed_job(cfg: EmbedJobConfig) -> EmbedPlan:
    src, m, sink = cfg.source, cfg.model, cfg.sink
    fs, shards, bad = scan_input(src.uri, src.storage_options,
                                 source_columns(src.id_column, src.text_column, src.columns), "source.uri",
                                 src.on_bad_shard.value, src.retry.policy())

    try:
        model = load_model_spec(m.name)
    except ModelNotFoundError as err:
        raise ConfigError(f"model.name: {err}") from None
    max_tokens = effective_max_tokens(model, m.max_tokens)
    if model.max_positions and max_tokens > model.max_positions:
        raise ConfigError(
            f"model.max_tokens: {max_tokens} is more than the model's limit of {model.max_positions} tokens"
        )
    if model.hidden_size is None:
        raise ConfigError(
            f"model.name: cannot read the size of {m.name} (no config.json reachable); "
            "give a local path or make the hub reachable from the driver"
        )
    if m.dimensions is not None and m.dimensions > model.hidden_size:
        raise ConfigError(
            f"model.dimensions: {m.dimensions} is larger than the model's {model.hidden_size} dimensions ({m.name})"
        )
    width = m.dimensions or model.hidden_size
    instruction = m.effective_instruction

    extra_fields = [shards[0].schema.field(c) for c in src.columns]
    provenance = Provenance(model=m.name, instruction=instruction, input_type=m.input_type.value,
                            dimensions=width, max_tokens=max_tokens)
    metadata = {**asdict(provenance), "vector_dtype": sink.vector_dtype.value}
    schema = main_schema(width, sink.vector_dtype.value, extra_fields, metadata)
    options = lance_storage_options(sink.storage_options)
    main_uri = table_uri(sink.uri, sink.table)
    rejected_uri = table_uri(sink.uri, f"{sink.table}_rejected")
    main_ds = open_dataset(main_uri, options)
    rejected_ds = open_dataset(rejected_uri, options)
    signature = prog.source_signature((s.path, s.num_rows) for s in shards)
    overwrite = sink.mode.value == "overwrite"
    resume = None if overwrite else find_unfinished_run(sink.table, main_ds, rejected_ds, signature)
    if main_ds is not None and sink.mode.value == "create" and resume is None:
        raise ConfigError(
            f"sink.table: table {sink.table!r} already exists at {main_uri}; use sink.mode: overwrite or append"
        )
    if main_ds is not None and sink.mode.value != "overwrite":
        _check_existing_table(cfg, main_ds.schema, schema, main_uri)

    return EmbedPlan(
        config=cfg,
        fs=fs,
        shards=shards,
        model=model,
        max_tokens=max_tokens,
        width=width,
        instruction=instruction,
        provenance=provenance,
        extra_fields=extra_fields,
        sink=SinkSpec(main_uri=main_uri, rejected_uri=rejected_uri, schema=schema, storage_options=options),
        main_version=main_ds.version if main_ds is not None else None,
        rejected_version=rejected_ds.version if rejected_ds is not None else None,
        rows_per_batch=rows_per_batch(fs, shards[0], src.text_column, cfg.engine.batch_tokens),
        run_id=resume[0] if resume else uuid.uuid4().hex,
        source_signature=signature,
        fragment_floor=resume[2] if resume else max_fragment_id(main_ds),
        resuming=resume is not None,
        done=resume[1] if resume else {},
        bad_shards=bad,
    )


def find_unfinished_run(table: str, main_ds: Any, rejected_ds: Any, signature: str):
    """(run id, committed progress, fragment floor) of a killed run over this source, or None."""
    ledgers = [read_ledger(ds) if ds is not None else None for ds in (main_ds, rejected_ds)]
    unfinished = [lg for lg in ledgers if lg is not None and not lg.complete]
    if not unfinished:
        return None
    run = unfinished[0]
    if run.source != signature:
        raise ConfigError(
            f"source.uri: table {table!r} holds an unfinished run ({run.run_id}) over a different "
            "source listing (shards, row counts or the candidates table changed since it was killed). Re-run with "
            "the original source to finish it, or use sink.mode: overwrite to rebuild the table"
        )
    same = [lg for lg in ledgers if lg is not None and lg.run_id == run.run_id]
    main_floor = ledgers[0].fragment_floor if ledgers[0] is not None and ledgers[0].run_id == run.run_id else None
    floor = main_floor if main_floor is not None else max_fragment_id(main_ds)
    return run.run_id, prog.merge_progress(*(lg.done for lg in same)), floor
