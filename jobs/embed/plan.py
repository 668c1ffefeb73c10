"""Turn a validated embedding config into a runnable plan, checking what needs the file system or the model.

Runs on the driver in about a second (Parquet footers, the model's config.json,
the sink table's schema): a missing source, a missing column, `dimensions`
larger than the model, or a table that does not match fail here, before Ray or
any engine starts, with the setting's path in the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from jobs.core.adapters import checked_adapter, recorded_uri
from jobs.core.batching import rows_per_batch, text_tokens
from jobs.core.config import ConfigError
from jobs.core.inputs import SourceRows, mean_chars, sample_rows, scan_input
from jobs.core.models import checked_model
from jobs.core.table_target import TableTarget, existing_provenance, plan_table
from jobs.embed.config import EmbedJobConfig
from jobs.embed.gate import GatePlan, plan_gate
from operators.infer.embedder import EmbedderSpec
from operators.infer.engine import EngineSpec
from operators.infer.lora_adapter import AdapterPayload
from operators.infer.model_revision import model_revision
from operators.infer.model_spec import ModelSpec
from operators.prepare.fingerprints import Provenance
from operators.read.parquet_source import BadShard, ShardInfo, source_columns
from operators.write.lance_sink import main_schema, read_provenance

log = logging.getLogger("batch_embed")

# What an existing table must share with this run for its vectors to be comparable: (metadata key, setting).
RECIPE = [
    ("model", "model.name"),
    ("input_type", "model.input_type"),
    ("instruction", "model.instruction"),
    ("dimensions", "model.dimensions"),
    ("max_tokens", "model.max_tokens"),
    ("vector_dtype", "sink.vector_dtype"),
]


@dataclass
class EmbedPlan(SourceRows):
    config: EmbedJobConfig
    fs: Any
    shards: list[ShardInfo]
    model: ModelSpec
    max_tokens: int
    dimensions: int  # the stored vectors' size: model.dimensions, or the model's own
    provenance: Provenance
    target: TableTarget
    rows_per_batch: int
    bad_shards: list[BadShard] = field(default_factory=list)  # left out (source.on_bad_shard: skip)
    adapter: AdapterPayload | None = None  # model.adapter, checked, as the engines get it
    gate: GatePlan | None = None  # gate: the judged queries a rebuild must pass before it is published

    @property
    def compared_columns(self) -> tuple[str, ...]:
        """The copied columns sync compares row by row (the index scans them): the text itself, when copied,
        is left out, since its hash is already in the fingerprint and it is the widest column there is."""
        src = self.config.source
        return tuple(c for c in src.columns if c != src.text_column)

    def embedder_spec(self, gpus: float, decided_dtype: str | None = None) -> EmbedderSpec:
        """`decided_dtype`: a CPU engine's `auto`, decided once for the run (pipeline.engine_dtype)."""
        m, eng = self.config.model, self.config.engine
        engine = EngineSpec(model_path=self.model.path, max_model_len=self.max_tokens, dtype=m.dtype.value,
                            gpus=gpus, trust_remote_code=m.trust_remote_code, decided_dtype=decided_dtype,
                            adapter=self.adapter, **eng.spec_fields(gpus, self.model.attention_heads))
        return EmbedderSpec(model=self.model, engine=engine, input_type=m.input_type.value,
                            instruction=self.provenance.instruction, max_tokens=self.max_tokens,
                            dimensions=self.dimensions, batch_tokens=eng.batch_tokens)


def check_existing_table(cfg: EmbedJobConfig, schema: pa.Schema, wanted: pa.Schema, uri: str) -> None:
    """An existing table must hold vectors of the same recipe and the same columns as this run writes."""
    have = read_provenance(schema)
    want = read_provenance(wanted) or {}
    if have is None:
        raise ConfigError(
            f"sink.table: {uri} was not written by this job (no provenance metadata); "
            "use sink.mode: overwrite or another sink.table"
        )
    for key, setting in RECIPE:
        if have.get(key) != want.get(key):
            raise ConfigError(
                f"{setting}: the existing table {cfg.sink.table} was embedded with {key}={have.get(key)!r}, "
                f"this run would use {want.get(key)!r}; vectors would not be comparable. Use sink.mode: "
                "overwrite to rebuild it, or another sink.table"
            )
    if (cfg.sink.mode.value != "sync" and have.get("revision") and want.get("revision")
            and have["revision"] != want["revision"]):
        # sync re-embeds every row instead (the revision is in each row's fingerprint)
        raise ConfigError(
            f"model.name: the existing table {cfg.sink.table} was embedded with {cfg.model.name} at revision "
            f"{have['revision']}, this run would load revision {want['revision']}; vectors would not be "
            "comparable. Use sink.mode: sync to re-embed every row, overwrite to rebuild, or another sink.table"
        )
    if cfg.sink.mode.value != "sync" and have.get("adapter") != want.get("adapter"):
        # sync re-embeds every row instead (the adapter's hash is in each row's fingerprint)
        raise ConfigError(
            f"model.adapter: the existing table {cfg.sink.table} was embedded with adapter "
            f"{have.get('adapter') or 'none'}, this run would apply {want.get('adapter') or 'none'}; vectors would "
            "not be comparable. Use sink.mode: sync to re-embed every row, overwrite to rebuild, or another sink.table"
        )
    simulated_table = "simulated" in (have.get("dtypes") or [])
    if simulated_table != (cfg.engine.backend.value == "simulated"):
        held = "simulated vectors (engine.backend: simulated)" if simulated_table else "vectors of a real model"
        raise ConfigError(f"engine.backend: the existing table {cfg.sink.table} holds {held}, this run would write "
                          f"{cfg.engine.backend.value} ones; the two never mix in one table. Use sink.mode: overwrite "
                          "or another sink.table")
    if schema.remove_metadata() != wanted.remove_metadata():
        raise ConfigError(
            f"source.columns: the existing table {cfg.sink.table} has columns {schema.names}, "
            f"this run would write {wanted.names}"
        )


def embedding_model(cfg: EmbedJobConfig) -> tuple[ModelSpec, int, int]:
    """The model's spec, its token limit and the stored size, checked against the model's own config."""
    m = cfg.model
    model, max_tokens = checked_model(m.name, m.max_tokens)
    if model.hidden_size is None:
        raise ConfigError(
            f"model.name: cannot read the size of {m.name} (no config.json reachable); "
            "give a local path or make the hub reachable from the driver"
        )
    if m.dimensions is not None and m.dimensions > model.hidden_size:
        raise ConfigError(
            f"model.dimensions: {m.dimensions} is larger than the model's {model.hidden_size} dimensions ({m.name})"
        )
    return model, max_tokens, m.dimensions or model.hidden_size


def weights_revision(cfg: EmbedJobConfig, model: ModelSpec) -> str | None:
    """The model's revision, part of every row's fingerprint; None for a table written before revisions were
    recorded, which keeps its fingerprints (an upgrade must not re-embed everything by surprise)."""
    have = existing_provenance(cfg.sink)
    if have is not None and "revision" not in have:
        log.warning("sink.table %s predates model revisions in provenance; its fingerprints stay without one "
                    "(sink.mode: overwrite starts recording it)", cfg.sink.table)
        return None
    return model_revision(model.path)


def plan_embed_job(cfg: EmbedJobConfig) -> EmbedPlan:
    src, m, sink = cfg.source, cfg.model, cfg.sink
    fs, shards, bad = scan_input(src.uri, src.storage_options,
                                 source_columns(src.id_column, src.text_column, src.columns), "source.uri",
                                 src.on_bad_shard.value, src.retry.policy())
    model, max_tokens, dimensions = embedding_model(cfg)
    adapter = checked_adapter(m.adapter, m.storage_options, model, m.name, m.adapter_base_check)
    provenance = Provenance(model=m.name, instruction=m.effective_instruction, input_type=m.input_type.value,
                            dimensions=dimensions, max_tokens=max_tokens, revision=weights_revision(cfg, model),
                            adapter=adapter.content_hash if adapter else None,
                            adapter_uri=recorded_uri(m.adapter) if adapter and m.adapter else None)
    extra_fields = [shards[0].schema.field(c) for c in src.columns]
    schema = main_schema(dimensions, sink.vector_dtype.value, extra_fields,
                         {**provenance.recorded(), "vector_dtype": sink.vector_dtype.value})
    target = plan_table(sink, schema, [(s.path, s.num_rows) for s in shards], "overwrite or append",
                        lambda existing, uri: check_existing_table(cfg, existing, schema, uri))
    chars = mean_chars(sample_rows(fs, shards[0], [src.text_column]).column(0))
    return EmbedPlan(
        config=cfg, fs=fs, shards=shards, model=model, max_tokens=max_tokens, dimensions=dimensions,
        provenance=provenance, target=target, adapter=adapter.payload() if adapter else None,
        gate=plan_gate(cfg.gate, dimensions),
        rows_per_batch=rows_per_batch(cfg.engine.batch_tokens, text_tokens(chars, max_tokens)),
        bad_shards=bad,
    )
