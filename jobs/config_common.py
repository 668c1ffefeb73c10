"""Settings every job shares (engine pool, table sink, run), and YAML loading with errors that name the key.

Each job's own sections live next to it (`config.py`: embedding, `rerank_config.py`,
`mine_config.py`); all are pydantic models that reject unknown keys, and a mistake
comes back as a `ConfigError` whose lines start with the key's path.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from operators.cpu_scheduling import CpuScheduling


class ConfigError(ValueError):
    """A bad setting; each line of the message starts with the setting's path."""


class ModelDtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_default=True)


class ReadRetryConfig(_Strict):
    attempts: int = Field(10, ge=1, description="Tries per read in all (1: no retry).")
    max_seconds: float = Field(300.0, ge=0, description="Give up retrying a read after this long (backoff "
                               "0.5 s doubling to 30 s); the job then stops naming the shard and can be re-run.")

    def policy(self) -> Any:
        from operators.shard_reads import RetryPolicy

        return RetryPolicy(attempts=self.attempts, max_seconds=self.max_seconds)


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
        16384, ge=64, description="Token budget of one engine call, counted as a padded kernel counts it (rows x "
        "the call's longest row); Ray batches are sized to about this many tokens."
    )
    cpu_scheduling: CpuScheduling = Field(
        CpuScheduling.auto,
        description="CPU engines' compute threads: `auto` runs them at the lowest real-time priority (SCHED_RR) "
        "where the OS permits it and it is safe, so that Ray's own processes do not preempt them, else at normal "
        "priority with a warning; `realtime`: the engine fails to start instead; `normal`: never. GPU engines: "
        "ignored.",
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


class RunConfig(_Strict):
    ray_address: str | None = Field(
        None, description="Ray cluster to join; default: RAY_ADDRESS, or a local Ray on 127.0.0.1."
    )
    summary_path: str | None = Field(
        None, description="Where the JSON summary goes; default `<sink.uri>/_runs/<table>-<utc time>.json`."
    )
    progress: bool = Field(True, description="Show progress bars.")


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


def parse_config(raw: dict[str, Any], schema: type[BaseModel]) -> Any:
    """Validate a raw dict as `schema`, one of the jobs' configs."""
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def load_config(path: str | Path | None, overrides: list[str] | None, schema: type[BaseModel]) -> Any:
    """Read YAML (if a path is given), apply `--set` overrides, and validate as `schema`."""
    return parse_config(read_raw_config(path, overrides), schema)


def read_raw_config(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """The YAML (if a path is given) with the `--set` overrides applied, not yet validated."""
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
    return apply_overrides(raw, overrides or [])


class UpkeepWhen(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class UpkeepConfig(_Strict):
    """Table upkeep after a successful run (and `batch-embed maintain`)."""

    when: UpkeepWhen = Field(UpkeepWhen.auto, description="auto: after a run that leaves the table with at least "
                             "min_rows rows; always; never.")
    min_rows: int = Field(100_000, ge=0, description="Size from which `auto` upkeep runs.")
    vector_index: Literal["auto", "IVF_PQ", "IVF_HNSW_SQ", "none"] = Field(
        "auto", description="auto: IVF_PQ; parameters from the row count and width unless given.")
    num_partitions: int | None = Field(None, ge=1)
    num_sub_vectors: int | None = Field(None, ge=1)
    index_min_rows: int = Field(10_000, ge=0, description="Smaller tables get no vector index (exact search).")
    id_index: bool = Field(True, description="BTREE index on `id` (what incremental runs and upserts look up).")
    fts_column: str | None = Field(None, description="Full-text (INVERTED) index on this column, for hybrid search.")
    compact: bool = Field(True, description="Merge small fragments.")
    target_rows_per_fragment: int = Field(1_048_576, ge=1)
    recall_queries: int = Field(50, ge=0, description="Stored vectors used to check ANN recall@10 against exact.")

    def settings(self, keep_versions: int, keep_days: float):
        from operators.table_upkeep import UpkeepSettings

        return UpkeepSettings(
            vector_index=self.vector_index, num_partitions=self.num_partitions, num_sub_vectors=self.num_sub_vectors,
            index_min_rows=self.index_min_rows, id_index=self.id_index, fts_column=self.fts_column,
            compact=self.compact, target_rows_per_fragment=self.target_rows_per_fragment,
            keep_versions=keep_versions, keep_days=keep_days, recall_queries=self.recall_queries,
        )


class RetentionMixin(_Strict):
    keep_versions: int = Field(20, ge=1, description="Upkeep keeps at least this many latest versions...")
    keep_days: float = Field(7.0, ge=0, description="... and every version younger than this (readers on them).")
