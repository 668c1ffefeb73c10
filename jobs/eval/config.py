"""`batch-embed eval`'s configuration: a vector table, queries and relevance judgements in, metrics out."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from jobs.core.config import StrictModel
from jobs.core.metrics import DEFAULT_METRICS, check_metric
from jobs.core.sections import EngineConfig, ModelDtype, QrelsConfig, QueriesConfig, RerankModelConfig, RunConfig


class EvalTableConfig(StrictModel):
    uri: str = Field(description="LanceDB database holding the table (local folder or s3://bucket/prefix).")
    name: str = Field(description="A table written by `batch-embed embed`: its recorded model and instruction "
                      "embed the queries.")
    text_column: str = Field("text", description="Documents' text, for --rerank (embed with source.columns: "
                             "[<text column>] to keep it).")
    query_instruction: str | None = Field(None, description="Override the instruction the table records for "
                                          "queries (Qwen3: `Instruct: {task}\\nQuery:`).")
    adapter: str | None = Field(
        None, description="Where the LoRA adapter the table was embedded with is now, if it moved (default: where "
        "the table records it; its content must be the same adapter).")
    version: int | None = Field(None, description="A version of the table other than its current one, e.g. a "
                                "gated rebuild's refused candidate (the embed summary names it).")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class CompareTableConfig(StrictModel):
    """`compare:`: evaluate a second table (or another version of the same one) on the same queries and
    judgements, side by side; every key defaults to the `table:` section's."""

    uri: str | None = None
    name: str | None = None
    version: int | None = Field(None, description="Default: the current version.")
    query_instruction: str | None = None
    adapter: str | None = None
    storage_options: dict[str, Any] | None = None

    def table(self, main: EvalTableConfig) -> EvalTableConfig:
        """The table section this comparison stands for."""
        given = self.model_dump(exclude_none=True)
        return main.model_copy(update={"version": None, "adapter": None, "query_instruction": None, **given})


class EvalSettings(StrictModel):
    metrics: list[str] = Field(list(DEFAULT_METRICS), min_length=1,
                               description="<metric>@<cutoff>: ndcg, recall, mrr, map, precision.")
    dims: list[int] | None = Field(None, description="Matryoshka sizes to evaluate at, from the one table "
                                   "(truncate + re-normalise); default: the table's size only.")
    rerank: bool = Field(False, description="Also rerank each query's top rerank_top_k and evaluate again "
                         "(needs the reranker section; --rerank sets it).")
    rerank_top_k: int = Field(100, ge=1, le=1000, description="Candidates reranked per query.")
    queries_per_scan: int = Field(1024, ge=1, description="Queries searched per pass over the table.")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for name in v:
            check_metric(name)
        return list(dict.fromkeys(v))

    @field_validator("dims")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return None
        if not v or any(d < 1 for d in v):
            raise ValueError("must be positive sizes, e.g. [1024, 512, 256]")
        return sorted(set(v), reverse=True)


class EvalOutputConfig(StrictModel):
    path: str | None = Field(None, description="The metrics JSON (--out); default: <table.uri>/_runs/"
                             "<table>-eval-<time>.json. The HTML report goes next to it.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class EvalJobConfig(StrictModel):
    table: EvalTableConfig
    queries: QueriesConfig
    qrels: QrelsConfig
    eval: EvalSettings = Field(default_factory=EvalSettings)
    compare: CompareTableConfig | None = Field(None, description="A second table or version to evaluate side by "
                                               "side (before/after a rebuild).")
    reranker: RerankModelConfig | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    output: EvalOutputConfig = Field(default_factory=EvalOutputConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    dtype: ModelDtype = Field(ModelDtype.auto, description="Engine dtype of the embedding model.")

    @model_validator(mode="after")
    def _reranker_for_rerank(self) -> EvalJobConfig:
        if self.eval.rerank and self.reranker is None:
            raise ValueError(".reranker: eval.rerank (--rerank) needs a reranker section (name: <Qwen3-Reranker>)")
        return self
