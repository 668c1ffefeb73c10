"""The embedding job's configuration: validated pydantic models loaded from YAML.

Everything a run needs is checked here, on the driver, before Ray or vLLM start;
a mistake comes back as a `ConfigError` whose lines start with the key's path
(`model.dimensions: ...`). Checks that need the file system or the model's own
config (a missing source, `dimensions` larger than the model) live in
`jobs.preflight` and report the same way.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The instruction the Qwen3-Embedding model card uses for web-search queries.
DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

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
        # the stream's own columns (operators/parquet_source.py, row_validator.py)
        "source_shard",
        "source_row",
        "reject_reason",
        "action",
        "old_fragment",
    }
)


class ConfigError(ValueError):
    """A bad setting; each line of the message starts with the setting's path."""


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


class ModelDtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_default=True)


class SourceConfig(_Strict):
    uri: str = Field(description="Local folder, glob, single file, or s3://bucket/prefix/ of Parquet shards.")
    id_column: str = Field("id", description="Column holding each row's unique id (written as string `id`).")
    text_column: str = Field("text", description="Column holding the text to embed.")
    columns: list[str] = Field(default_factory=list, description="Extra source columns copied to the table.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="s3fs options (endpoint_url, key, secret, client_kwargs...); credentials default to the "
        "environment / AWS chain.",
    )

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


class ModelConfig(_Strict):
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


class ActorsConfig(_Strict):
    min: int = Field(1, ge=1, description="Embedding actors kept alive.")
    max: int = Field(1, ge=1, description="Embedding actors the pool may grow to under backlog.")

    @model_validator(mode="after")
    def _ordered(self) -> ActorsConfig:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is smaller than min ({self.min})")
        return self


class EngineConfig(_Strict):
    actors: ActorsConfig = Field(default_factory=ActorsConfig, description="Autoscaling pool size {min, max}.")
    gpus_per_actor: float | Literal["auto"] = Field(
        "auto", description="GPUs per engine actor; `auto`: 1 if the cluster has GPUs, else 0 (CPU engine)."
    )
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs Ray reserves for each engine actor.")
    threads_per_actor: int | Literal["auto"] = Field(
        "auto",
        description="Compute threads of a CPU engine; `auto`: a node's cores divided by actors.max. "
        "Ray would otherwise pin an actor with 1 CPU to 1 thread.",
    )
    batch_tokens: int = Field(
        16384, ge=64, description="Token budget of one engine call; Ray batches are sized to about this."
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM engine arguments passed through as is (e.g. enforce_eager)."
    )

    @field_validator("gpus_per_actor", "threads_per_actor")
    @classmethod
    def _auto_or_at_least(cls, v: float | str, info: Any) -> float | str:
        minimum = {"gpus_per_actor": 0, "threads_per_actor": 1}[info.field_name]
        if v != "auto" and v < minimum:
            raise ValueError(f"must be >= {minimum} or 'auto'")
        return v

    @field_validator("vllm")
    @classmethod
    def _no_owned_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = {"model", "runner", "dtype", "max_model_len", "trust_remote_code"} & set(v)
        if owned:
            raise ValueError(f"{sorted(owned)} are set from the model section, not engine.vllm")
        return v


_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class TableSinkConfig(_Strict):
    """What every job writing a LanceDB table shares: where, and how often it commits."""

    uri: str = Field(description="LanceDB database: local folder or s3://bucket/prefix.")
    table: str = Field(description="Table name; rejected rows go to `<table>_rejected`.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Object-store options (endpoint_url/aws_endpoint, region, ...)."
    )
    rows_per_fragment: int = Field(10_000, ge=1, description="Rows a writer gathers into one Lance fragment.")
    commit_every_rows: int = Field(100_000, ge=1, description="Commit written fragments after this many rows.")
    commit_every_seconds: float = Field(60.0, gt=0, description="... or after this many seconds.")
    lock_timeout_seconds: float = Field(
        900.0, gt=0, description="A writer's table lock counts as abandoned after this long without a commit "
        "(sooner on the same host, as soon as its process is gone)."
    )

    @model_validator(mode="after")
    def _lock_outlives_commits(self) -> TableSinkConfig:
        if self.lock_timeout_seconds <= self.commit_every_seconds:
            raise ValueError(".lock_timeout_seconds: must be longer than sink.commit_every_seconds")
        return self

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        if not _TABLE_NAME.match(v):
            raise ValueError("use letters, digits, '_', '-' and '.' only")
        return v


class SinkConfig(TableSinkConfig):
    mode: SinkMode = Field(
        SinkMode.create,
        description="create: fail if the table exists; overwrite: replace it atomically at the end (the way "
        "to rebuild with another model); append: add rows to it; sync: embed only new and changed rows "
        "(by fingerprint) and replace their old vectors.",
    )
    vector_dtype: VectorDtype = Field(VectorDtype.float32, description="Stored vector element type.")


class SyncConfig(_Strict):
    delete_missing: bool = Field(
        False, description="sync mode: delete table rows whose id is no longer a valid row of the source."
    )


class RunConfig(_Strict):
    ray_address: str | None = Field(
        None, description="Ray cluster to join; default: RAY_ADDRESS, or a local Ray on 127.0.0.1."
    )
    summary_path: str | None = Field(
        None, description="Where the JSON summary goes; default `<sink.uri>/_runs/<table>-<utc time>.json`."
    )
    progress: bool = Field(True, description="Show progress bars.")


class EmbedJobConfig(_Strict):
    source: SourceConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sink: SinkConfig
    sync: SyncConfig = Field(default_factory=SyncConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _sync_settings_need_sync_mode(self) -> EmbedJobConfig:
        if self.sync.delete_missing and self.sink.mode is not SinkMode.sync:
            raise ValueError(".sync: delete_missing applies to sink.mode: sync only")
        return self


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a raw config dict; values are parsed as YAML scalars."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.dimensions=256")
        node = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {key!r} inside it")
            node = child
        node[parts[-1]] = yaml.safe_load(value) if value != "" else ""
    return raw


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif e["type"] == "missing":
            msg = "required setting is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        if msg.startswith("."):  # a model validator naming one of its fields: ".field: message"
            field_name, _, msg = msg[1:].partition(": ")
            path = f"{path}.{field_name}" if path else field_name
        lines.append(f"{path}: {msg}" if path else msg)
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], schema: type[BaseModel] | None = None) -> Any:
    """Validate a raw dict as `schema` (default: the embedding job's config)."""
    try:
        return (schema or EmbedJobConfig).model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                schema: type[BaseModel] | None = None) -> Any:
    """Read YAML (if a path is given), apply `--set` overrides, and validate as `schema`."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config: no such file: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"--config: {p} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config: {p} must hold a mapping of sections (model, engine, sink, run...)")
        raw = loaded or {}
    return parse_config(apply_overrides(raw, overrides or []), schema)
