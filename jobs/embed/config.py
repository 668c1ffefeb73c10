"""The embedding job's configuration: validated pydantic models loaded from YAML.

Everything a run needs is checked here, on the driver, before Ray or vLLM start;
a mistake comes back as a `ConfigError` whose lines start with the key's path
(`model.dimensions: ...`). Checks that need the file system or the model's own
config (a missing source, `dimensions` larger than the model) live in
`jobs/embed/plan.py` and report the same way.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.core.config import StrictModel
from jobs.core.sections import (
    AdapterFields,
    EngineConfig,
    ModelDtype,
    QueriesConfig,
    ReadRetryConfig,
    RerankMode,
    RerankModelConfig,
    RetentionMixin,
    RunConfig,
    TableSinkConfig,
    UpkeepConfig,
)
from jobs.embed.gate import GateConfig
from operators.infer.prompts import DEFAULT_QUERY_INSTRUCTION

# Columns the job writes itself; a copied source column may not take these names.
RESERVED_COLUMNS = frozenset(
    {
        "id",
        "vector",
        "text_hash",
        "fingerprint",
        "n_tokens",
        "truncated",
        "embed_model",
        "embed_input_type",
        "embed_instruction",
        "embed_dimensions",
        "embed_max_tokens",
        # the stream's own columns (operators/read/parquet_source.py, row_validator.py)
        "source_shard",
        "source_row",
        "reject_reason",
        "action",
        "old_fragment",
    }
)


class InputType(str, Enum):
    document = "document"
    query = "query"


class SinkMode(str, Enum):
    create = "create"
    overwrite = "overwrite"
    append = "append"
    sync = "sync"


class VectorDtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


class BadShardPolicy(str, Enum):
    skip = "skip"
    fail = "fail"


class SourceConfig(StrictModel):
    uri: str = Field(description="Local folder, glob, single file, or s3://bucket/prefix/ of Parquet shards.")
    id_column: str = Field("id", description="Column holding each row's unique id (written as string `id`).")
    text_column: str = Field("text", description="Column holding the text to embed.")
    columns: list[str] = Field(default_factory=list, description="Extra source columns copied to the table.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="s3fs options (endpoint_url, key, secret, client_kwargs...); credentials default to the "
        "environment / AWS chain.",
    )
    on_bad_shard: BadShardPolicy = Field(
        BadShardPolicy.skip,
        description="A shard that is not Parquet, is truncated or lacks a column: `skip` it (named in the log "
        "and the summary; exit code 5) or `fail` the job before anything is committed.",
    )
    retry: ReadRetryConfig = Field(default_factory=ReadRetryConfig,
                                   description="Retries of reads that fail on the storage path (endpoint down).")

    @field_validator("columns")
    @classmethod
    def _no_reserved(cls, cols: list[str]) -> list[str]:
        clash = sorted(set(cols) & RESERVED_COLUMNS)
        if clash:
            raise ValueError(f"{clash} are written by the job itself; rename them in the source")
        if len(set(cols)) != len(cols):
            raise ValueError("lists a column twice")
        return cols

    @model_validator(mode="after")
    def _text_name_is_the_text(self) -> SourceConfig:
        # Copying the text column itself is how a table keeps its documents (the
        # reranking job reads them); any other column called `text` would clash.
        if "text" in self.columns and self.text_column != "text":
            raise ValueError(".columns: a copied column may be called 'text' only if it is source.text_column")
        return self


class ModelConfig(AdapterFields):
    name: str = Field(
        "Qwen/Qwen3-Embedding-0.6B",
        description="HF model id, local path, or pkg://package/subdir for a model shipped in a Python package.",
    )
    input_type: InputType = Field(
        InputType.document, description="`document`: text as is; `query`: prefixed with the instruction."
    )
    instruction: str | None = Field(
        None,
        description="Task instruction for queries (`Instruct: {instruction}\\nQuery:{text}`); default is the "
        "model card's web-search one; an empty string means no prefix. Documents take none.",
    )
    max_tokens: int | None = Field(
        None,
        gt=1,
        description="Longer inputs are cut to this many tokens (end token kept). Default: the "
        "model's limit, at most 8192.",
    )
    dimensions: int | None = Field(
        None, gt=0, description="Matryoshka size: keep the first d dimensions, then L2-normalise. Default: full."
    )
    dtype: ModelDtype = Field(ModelDtype.auto, description="Weights/activations dtype in the engine.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own Python code.")

    @model_validator(mode="after")
    def _instruction_only_for_queries(self) -> ModelConfig:
        if self.input_type is InputType.document and self.instruction:
            raise ValueError(
                ".instruction: documents are embedded without an instruction (Qwen3-Embedding); "
                "set model.input_type: query, or remove model.instruction"
            )
        return self

    @property
    def effective_instruction(self) -> str:
        """The instruction actually prefixed ('' for documents or when switched off)."""
        if self.input_type is InputType.document:
            return ""
        return DEFAULT_QUERY_INSTRUCTION if self.instruction is None else self.instruction


class SinkConfig(TableSinkConfig, RetentionMixin):
    mode: SinkMode = Field(
        SinkMode.create,
        description="create: fail if the table exists; overwrite: replace it atomically at the end (the way "
        "to rebuild with another model); append: add rows to it; sync: embed only new and changed rows "
        "(by fingerprint) and replace their old vectors.",
    )
    vector_dtype: VectorDtype = Field(VectorDtype.float32, description="Stored vector element type.")


class SyncConfig(StrictModel):
    delete_missing: bool = Field(
        False, description="sync mode: delete table rows whose id is no longer a valid row of the source."
    )


class FollowUpCandidates(StrictModel):
    top_k: int = Field(100, ge=1, le=10_000, description="Candidates reranked per query.")
    text_column: str | None = Field(None, description="Default: the embedding job's source.text_column.")
    query_instruction: str | None = None
    queries_per_scan: int = Field(1024, ge=1)
    search: Literal["auto", "exact", "index"] = Field(
        "auto", description="auto: the table's vector index where it has one (ANN, hits rescored exactly), else "
        "an exact scan per queries_per_scan queries; exact; index: fail if the table has none.")


class FollowUpSink(TableSinkConfig):
    uri: str | None = Field(None, description="Default: the embedding job's sink.uri.")  # type: ignore[assignment]
    # The table was just (re-)embedded: yesterday's reranking of the same queries is stale.
    mode: RerankMode = RerankMode.overwrite


class RerankSection(StrictModel):
    """The optional `rerank:` section: after embedding, rerank a query set against the table."""

    queries: QueriesConfig
    candidates: FollowUpCandidates = Field(default_factory=FollowUpCandidates)
    model: RerankModelConfig = Field(default_factory=RerankModelConfig)
    engine: EngineConfig | None = Field(None, description="Default: the embedding job's engine section.")
    sink: FollowUpSink

    def job_config(self, embed: EmbedJobConfig) -> dict[str, Any]:
        """The raw config of the reranking job this section describes, against `embed`'s table (validated by
        that job's own model, through the job catalog)."""
        sink = self.sink.model_dump(mode="json")
        sink["uri"] = sink["uri"] or embed.sink.uri
        sink["storage_options"] = sink["storage_options"] or embed.sink.storage_options
        candidates = {**self.candidates.model_dump(mode="json"), "table": embed.sink.table, "uri": embed.sink.uri,
                      "storage_options": embed.sink.storage_options}
        candidates["text_column"] = self.candidates.text_column or embed.source.text_column
        return {
            "queries": self.queries.model_dump(mode="json"),
            "candidates": candidates,
            "model": self.model.model_dump(mode="json"),
            # the reranking job's engine section has no tokenizer tasks
            "engine": self.engine.model_dump(mode="json") if self.engine
            else embed.engine.model_dump(mode="json", exclude={"tokenizer_cpus"}),
            "sink": sink,
            "run": {**embed.run.model_dump(mode="json"), "summary_path": None},
        }


class EmbedEngineConfig(EngineConfig):
    """The engine section, and the tasks that feed the engines (the embedding job's own)."""

    tokenizer_cpus: float = Field(
        1.0, gt=0, le=64, description="CPUs each validating and tokenising task reserves (it tokenises on one "
        "thread, ahead of the engines). 1 suits a node with cores to spare beside its engines; on a node of 2-4 "
        "CPUs, 0.5 lets two such tasks run beside an engine and the quarter-CPU reads and writes.",
    )


class EmbedJobConfig(StrictModel):
    source: SourceConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EmbedEngineConfig = Field(default_factory=EmbedEngineConfig)
    sink: SinkConfig
    sync: SyncConfig = Field(default_factory=SyncConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    rerank: RerankSection | None = Field(None, description="Rerank a query set against the table once it is built.")
    upkeep: UpkeepConfig = Field(default_factory=UpkeepConfig, description="Indexes, compaction, old versions.")
    gate: GateConfig | None = Field(None, description="Publish an overwrite only if retrieval on judged queries "
                                    "passes (jobs/embed/gate.py).")

    @model_validator(mode="after")
    def _rerank_reads_the_text(self) -> EmbedJobConfig:
        if self.rerank is None:
            return self
        text = self.rerank.candidates.text_column or self.source.text_column
        if text not in self.source.columns:
            raise ValueError(f".rerank: the reranker reads each candidate's text from the table; add {text!r} to "
                             "source.columns so the table keeps it")
        if self.rerank.sink.table == self.sink.table and self.rerank.sink.uri in (None, self.sink.uri):
            raise ValueError(".rerank: rerank.sink.table must differ from sink.table")
        return self

    @model_validator(mode="after")
    def _sync_settings_need_sync_mode(self) -> EmbedJobConfig:
        if self.sync.delete_missing and self.sink.mode is not SinkMode.sync:
            raise ValueError(".sync: delete_missing applies to sink.mode: sync only")
        if self.gate is not None and self.sink.mode is not SinkMode.overwrite:
            raise ValueError(".gate: gates a rebuild, sink.mode: overwrite (other modes make rows live as they "
                             "commit)")
        return self
