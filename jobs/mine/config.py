"""`batch-embed mine`'s configuration: (query, positive) pairs in, hard negatives out as JSONL."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field, model_validator

from jobs.core.config import StrictModel
from jobs.core.sections import EngineConfig, ModelDtype, ReadRetryConfig, RerankModelConfig, RunConfig


class MinePairsConfig(StrictModel):
    uri: str = Field(description="Parquet of (query, positive) pairs (local or s3://).")
    query_column: str = "query"
    positive_column: str = "positive"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    retry: ReadRetryConfig = Field(default_factory=ReadRetryConfig, description="Retries of reads, as source.retry.")

    @model_validator(mode="after")
    def _distinct(self) -> MinePairsConfig:
        if self.query_column == self.positive_column:
            raise ValueError(".positive_column: must differ from pairs.query_column")
        if self.positive_column in ("id", "text"):
            raise ValueError(".positive_column: 'id' and 'text' are names the job uses itself; rename the column")
        return self


class MineCandidatesConfig(StrictModel):
    uri: str = Field(description="LanceDB database holding the vector table.")
    table: str = Field(description="A table written by `batch-embed embed` that keeps its text.")
    text_column: str = "text"
    query_instruction: str | None = Field(None, description="As in `batch-embed rerank`'s candidates section.")
    adapter: str | None = Field(None, description="As in `batch-embed rerank`'s candidates section.")
    queries_per_scan: int = Field(1024, ge=1)
    search: Literal["auto", "exact", "index"] = Field(
        "auto", description="auto: the table's vector index where it has one (ANN, hits rescored exactly), else "
        "an exact scan per queries_per_scan queries; exact; index: fail if the table has none.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class Sampling(str, Enum):
    top = "top"
    random = "random"


class Scorer(str, Enum):
    embedding = "embedding"
    reranker = "reranker"


class MiningConfig(StrictModel):
    range_min: int = Field(0, ge=0, description="Skip this many best candidates (likely unlabelled positives).")
    range_max: int = Field(100, ge=1, le=10_000, description="Consider at most this many candidates.")
    max_score: float | None = Field(None, description="Drop candidates scoring above this.")
    absolute_margin: float | None = Field(None, ge=0, description="Drop candidates scoring above positive - m.")
    relative_margin: float | None = Field(None, ge=0, lt=1, description="Drop candidates above positive * (1 - m).")
    num_negatives: int = Field(3, ge=1, description="Negatives per pair.")
    sampling: Sampling = Field(Sampling.top, description="top: the best that pass; random: a seeded random choice.")
    seed: int = 12
    scorer: Scorer = Field(Scorer.embedding, description="Score candidates (and the positive) by the embedding's "
                           "cosine, or by the reranker's P(yes) (needs the reranker section).")

    @model_validator(mode="after")
    def _range(self) -> MiningConfig:
        if self.range_min >= self.range_max:
            raise ValueError(f".range_min: {self.range_min} leaves nothing of range_max={self.range_max}")
        return self


class OutputConfig(StrictModel):
    path: str = Field(description="JSONL file (local or s3://) for ms-swift: query, response, rejected_response.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class MineJobConfig(StrictModel):
    pairs: MinePairsConfig
    candidates: MineCandidatesConfig
    mining: MiningConfig = Field(default_factory=MiningConfig)
    reranker: RerankModelConfig | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    output: OutputConfig
    run: RunConfig = Field(default_factory=RunConfig)
    dtype: ModelDtype = Field(ModelDtype.auto, description="Engine dtype of the embedding model.")

    @model_validator(mode="after")
    def _reranker_for_scorer(self) -> MineJobConfig:
        if self.mining.scorer is Scorer.reranker and self.reranker is None:
            raise ValueError(".reranker: mining.scorer: reranker needs a reranker section (model name...)")
        return self
