"""Config sections several jobs share: the engine pool, the table sink, the run, upkeep, queries, the reranker.

A job's own sections live in its package (`jobs/<job>/config.py`).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.core.config import ConfigError, StrictModel
from operators.infer.cpu_scheduling import CpuScheduling


class ModelDtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class ReadRetryConfig(StrictModel):
    attempts: int = Field(10, ge=1, description="Tries per read in all (1: no retry).")
    max_seconds: float = Field(300.0, ge=0, description="Give up retrying a read after this long (backoff "
                               "0.5 s doubling to 30 s); the job then stops naming the shard and can be re-run.")

    def policy(self) -> Any:
        from operators.read.shard_reads import RetryPolicy

        return RetryPolicy(attempts=self.attempts, max_seconds=self.max_seconds)


class ActorsConfig(StrictModel):
    min: int = Field(1, ge=1, description="Embedding actors kept alive.")
    max: int = Field(1, ge=1, description="Embedding actors the pool may grow to under backlog.")

    @model_validator(mode="after")
    def _ordered(self) -> ActorsConfig:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is smaller than min ({self.min})")
        return self


class EngineBackend(str, Enum):
    vllm = "vllm"
    simulated = "simulated"


class SimulatedEngineConfig(StrictModel):
    """`engine.backend: simulated`: the speed each engine actor emulates (operators/infer/simulated_engine.py)."""

    tokens_per_second: float = Field(0.0, ge=0, description="Input tokens a second per engine; 0: unlimited.")
    startup_seconds: float = Field(0.0, ge=0, description="Seconds each engine takes to start.")


class EngineConfig(StrictModel):
    actors: ActorsConfig = Field(default_factory=ActorsConfig, description="Autoscaling pool size {min, max}.")
    gpus_per_actor: float | Literal["auto"] = Field(
        "auto", description="GPUs per engine actor; `auto`: 1 if the cluster has GPUs, else 0 (CPU engine)."
    )
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs Ray reserves for each engine actor.")
    threads_per_actor: int | Literal["auto"] = Field(
        "auto",
        description="Compute threads of a CPU engine; `auto`: its node's cores divided by the engines that fit on "
        "that node (by cpus_per_actor, at most actors.max). Ray would otherwise pin an actor with 1 CPU to 1 thread.",
    )
    batch_tokens: int = Field(
        16384, ge=64, description="Token budget of one engine call, counted as a padded kernel counts it (rows x "
        "the call's longest row); Ray batches are sized to about this many tokens."
    )
    cpu_scheduling: CpuScheduling = Field(
        CpuScheduling.normal,
        description="CPU engines' compute threads: `normal` priority (the default: a library must not raise "
        "thread priority on shared nodes); `auto`: the lowest real-time priority (SCHED_RR 1) where the OS "
        "permits it and the node's engines fit its cores, so Ray's own processes do not preempt them, else normal "
        "with a warning; `realtime`: the same, but the engine fails to start where it cannot. GPU engines: ignored.",
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM engine arguments passed through as is (e.g. enforce_eager)."
    )
    backend: EngineBackend = Field(
        EngineBackend.vllm, description="`vllm`; `simulated`: no model, deterministic vectors from the token ids "
        "at `simulated.tokens_per_second` per engine, to dry-run a config at fleet scale (logical GPUs) before "
        "renting GPUs. Tables record it; sync and append refuse to mix simulated and real vectors.",
    )
    simulated: SimulatedEngineConfig = Field(default_factory=SimulatedEngineConfig)

    def spec_fields(self, gpus: float, attention_heads: int | None = None) -> dict[str, Any]:
        """What an operators.infer.engine.EngineSpec takes from this section, for engines of `gpus` GPUs."""
        from operators.infer.gpu_plan import tensor_parallel_size
        from operators.infer.simulated_engine import SimulatedRate

        try:
            tp = tensor_parallel_size(gpus, attention_heads)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return {"extra": dict(self.vllm), "cpu_scheduling": self.cpu_scheduling.value, "backend": self.backend.value,
                "simulated": SimulatedRate(self.simulated.tokens_per_second, self.simulated.startup_seconds),
                "tensor_parallel_size": tp}

    @field_validator("gpus_per_actor")
    @classmethod
    def _whole_gpus_above_one(cls, v: float | str) -> float | str:
        if v != "auto" and v > 1 and v != int(v):
            raise ValueError("an engine takes a share of one GPU (up to 1) or a whole number of GPUs (tensor "
                             "parallel); not a fraction above one")
        return v

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


class TableSinkConfig(StrictModel):
    """What every job writing a LanceDB table shares: where, and how often it commits."""

    uri: str = Field(description="LanceDB database: local folder or s3://bucket/prefix.")
    table: str = Field(description="Table name; rejected rows go to `<table>_rejected`.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Object-store options (endpoint_url/aws_endpoint, region, ...)."
    )
    rows_per_fragment: int = Field(10_000, ge=1, description="Most rows in one Lance fragment file (writers write "
                                   "each engine batch as it comes; upkeep compacts).")
    commit_every_rows: int = Field(100_000, ge=1, description="Commit written fragments after this many rows.")
    commit_every_seconds: float = Field(60.0, gt=0, description="... or after this many seconds.")
    lock_timeout_seconds: float = Field(
        60.0, ge=4, description="A writer's table lease counts as abandoned after this long without a heartbeat "
        "(every quarter of it), on any host; at once when its process is provably gone (same host and container)."
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        if not _TABLE_NAME.match(v):
            raise ValueError("use letters, digits, '_', '-' and '.' only")
        return v


class RunConfig(StrictModel):
    ray_address: str | None = Field(
        None, description="Ray cluster to join; default: RAY_ADDRESS, or a local Ray on 127.0.0.1."
    )
    summary_path: str | None = Field(
        None, description="Where the JSON summary goes; default `<sink.uri>/_runs/<table>-<utc time>.json`."
    )
    progress: bool = Field(True, description="Show progress bars.")


class UpkeepWhen(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class UpkeepConfig(StrictModel):
    """Table upkeep after a successful run (and `batch-embed maintain`)."""

    when: UpkeepWhen = Field(UpkeepWhen.auto, description="auto: after a run that leaves the table with at least "
                             "min_rows rows; always; never.")
    min_rows: int = Field(100_000, ge=0, description="Size from which `auto` upkeep runs.")
    vector_index: Literal["auto", "IVF_SQ", "IVF_PQ", "IVF_HNSW_SQ", "none"] = Field(
        "auto", description="auto: IVF_SQ (LanceDB's default search finds >= 0.95 of the exact top 10); "
        "parameters from the row count and dimensions unless given.")
    num_partitions: int | None = Field(None, ge=1)
    num_sub_vectors: int | None = Field(None, ge=1)
    index_min_rows: int = Field(10_000, ge=0, description="Smaller tables get no vector index (exact search).")
    id_index: bool = Field(True, description="BTREE index on `id` (what incremental runs and upserts look up).")
    fts_column: str | None = Field(None, description="Full-text (INVERTED) index on this column, for hybrid search.")
    compact: bool = Field(True, description="Merge small fragments.")
    target_rows_per_fragment: int = Field(1_048_576, ge=1)
    recall_queries: int = Field(50, ge=0, description="Stored vectors used to check ANN recall@10 against exact.")
    retrain_share: float = Field(0.2, gt=0, le=1, description="Train the vector index again once this share of "
                                 "rows lies outside the trained index (new rows join it as deltas until then).")
    max_index_deltas: int = Field(8, ge=1, description="... or once this many delta indices have piled up.")

    def settings(self, keep_versions: int, keep_days: float):
        from operators.write.table_upkeep import UpkeepSettings

        return UpkeepSettings(
            vector_index=self.vector_index, num_partitions=self.num_partitions, num_sub_vectors=self.num_sub_vectors,
            index_min_rows=self.index_min_rows, id_index=self.id_index, fts_column=self.fts_column,
            compact=self.compact, target_rows_per_fragment=self.target_rows_per_fragment,
            keep_versions=keep_versions, keep_days=keep_days, recall_queries=self.recall_queries,
            retrain_share=self.retrain_share, max_index_deltas=self.max_index_deltas,
        )


class RetentionMixin(StrictModel):
    keep_versions: int = Field(20, ge=1, description="Upkeep keeps at least this many latest versions...")
    keep_days: float = Field(7.0, ge=0, description="... and every version younger than this (readers on them).")


class QueriesConfig(StrictModel):
    """A Parquet of queries (`batch-embed rerank` with candidates, `eval`, the embed job's `rerank:`)."""

    uri: str = Field(description="Parquet of queries (local or s3://).")
    id_column: str = "query_id"
    text_column: str = "query"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    retry: ReadRetryConfig = Field(default_factory=ReadRetryConfig, description="Retries of reads, as source.retry.")


class QrelsConfig(StrictModel):
    uri: str = Field(description="Parquet of relevance judgements (local or s3://).")
    query_id_column: str = "query_id"
    doc_id_column: str = "doc_id"
    relevance_column: str = "relevance"
    storage_options: dict[str, Any] = Field(default_factory=dict)


DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"


class RerankMode(str, Enum):
    """How a reranking table is written (`batch-embed rerank`, the embed job's `rerank:` section)."""

    create = "create"
    overwrite = "overwrite"
    append = "append"


class AdapterFields(StrictModel):
    """A LoRA adapter on a model section (embed's `model`, rerank's `model`, eval's and mine's `reranker`)."""

    adapter: str | None = Field(
        None, description="A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors, as peft and "
        "ms-swift write it), local or s3://, applied to this section's model by the engine (vLLM's LoRA serving; "
        "no merged copy is written). Checked against the model at plan time; the table records its content hash.",
    )
    adapter_base_check: bool = Field(
        True, description="Refuse an adapter whose base_model_name_or_path names another model than this "
        "section's name.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for an s3:// adapter.")


class RerankModelConfig(AdapterFields):
    """A Qwen3-Reranker (rerank's `model`, eval's and mine's `reranker`)."""

    name: str = Field(DEFAULT_RERANKER, description="A Qwen3-Reranker (HF id, local folder or pkg://).")
    instruction: str | None = Field(None, description="The <Instruct> of the template; default: the model card's "
                                    "web-search one.")
    max_tokens: int | None = Field(None, gt=1, description="Longest pair, template included; longer documents are "
                                   "cut. Default: the model's limit, at most 8192.")
    dtype: ModelDtype = ModelDtype.auto
    trust_remote_code: bool = False
