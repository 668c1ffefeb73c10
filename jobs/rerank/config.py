"""The reranking job's configuration (`batch-embed rerank`), validated like the embedding job's.

Two inputs, exactly one per job:
- `pairs`: Parquet of (query_id, query, doc_id, doc_text) rows, column names configurable;
- `queries` + `candidates`: Parquet of (query_id, query); the queries are embedded with the
  vector table's own model, its top `candidates.top_k` rows are the candidates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from jobs.core.config import StrictModel
from jobs.core.sections import (
    EngineConfig,
    QueriesConfig,
    ReadRetryConfig,
    RerankMode,
    RerankModelConfig,
    RunConfig,
    TableSinkConfig,
)


class PairsConfig(StrictModel):
    uri: str = Field(description="Local folder, glob, file or s3:// prefix of Parquet pairs; a query's pairs must "
                     "be consecutive rows of one shard.")
    query_id_column: str = "query_id"
    query_column: str = "query"
    doc_id_column: str = "doc_id"
    doc_text_column: str = "doc_text"
    score_column: str | None = Field(None, description="Optional first-stage score, kept as `retrieval_score`.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="s3fs options, as source.*")
    retry: ReadRetryConfig = Field(default_factory=ReadRetryConfig, description="Retries of reads, as source.retry.")


class CandidatesConfig(StrictModel):
    table: str = Field(description="A vector table written by `batch-embed embed`.")
    uri: str | None = Field(None, description="Its LanceDB database; default: sink.uri.")
    top_k: int = Field(100, ge=1, le=10_000, description="Candidates reranked per query.")
    text_column: str = Field("text", description="The table's column holding the documents' text (embed with "
                             "source.columns: [<text column>] to keep it).")
    query_instruction: str | None = Field(
        None, description="Instruction the queries are embedded with. Default: the table's own if it holds "
        "queries, else the model card's web-search one for last-token (Qwen3) models and none for others.")
    adapter: str | None = Field(
        None, description="Where the LoRA adapter the table was embedded with is now, if it moved (default: where "
        "the table records it; its content must be the same adapter).")
    queries_per_scan: int = Field(1024, ge=1, description="Queries searched together in one pass over the table.")
    search: Literal["auto", "exact", "index"] = Field(
        "auto", description="auto: the table's vector index where it has one (ANN, hits rescored exactly), else "
        "an exact scan per queries_per_scan queries; exact; index: fail if the table has none.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class RerankSinkConfig(TableSinkConfig):
    mode: RerankMode = Field(
        RerankMode.append,
        description="append: rerank only the queries the table does not hold yet, so re-running a finished "
        "job does nothing; create: fail if the table exists; overwrite: replace it at the end.",
    )


class RerankJobConfig(StrictModel):
    pairs: PairsConfig | None = None
    queries: QueriesConfig | None = None
    candidates: CandidatesConfig | None = None
    model: RerankModelConfig = Field(default_factory=RerankModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sink: RerankSinkConfig
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _one_input(self) -> RerankJobConfig:
        if (self.pairs is None) == (self.queries is None):
            raise ValueError(".pairs: give either pairs (a Parquet of pairs) or queries + candidates, not both")
        if self.queries is not None and self.candidates is None:
            raise ValueError(".candidates: queries need candidates.table (the vector table to search)")
        if self.pairs is not None and self.candidates is not None:
            raise ValueError(".candidates: applies to queries, not to pairs")
        return self

    @property
    def candidates_uri(self) -> str:
        assert self.candidates is not None
        return self.candidates.uri or self.sink.uri
