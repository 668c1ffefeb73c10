"""The reranking job's configuration (`batch-embed rerank`), validated like the embedding job's.

Two inputs, exactly one per job:
- `pairs`: Parquet of (query_id, query, doc_id, doc_text) rows, column names configurable;
- `queries` + `candidates`: Parquet of (query_id, query); the queries are embedded with the
  vector table's own model, its top `candidates.top_k` rows are the candidates.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, model_validator

from jobs.config_common import EngineConfig, ModelDtype, RunConfig, TableSinkConfig, _Strict

DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"


class PairsConfig(_Strict):
    uri: str = Field(description="Local folder, glob, file or s3:// prefix of Parquet pairs; a query's pairs must "
                     "be consecutive rows of one shard.")
    query_id_column: str = "query_id"
    query_column: str = "query"
    doc_id_column: str = "doc_id"
    doc_text_column: str = "doc_text"
    score_column: str | None = Field(None, description="Optional first-stage score, kept as `retrieval_score`.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="s3fs options, as source.*")


class QueriesConfig(_Strict):
    uri: str = Field(description="Parquet of queries (local or s3://).")
    id_column: str = "query_id"
    text_column: str = "query"
    storage_options: dict[str, Any] = Field(default_factory=dict)


class CandidatesConfig(_Strict):
    table: str = Field(description="A vector table written by `batch-embed embed`.")
    uri: str | None = Field(None, description="Its LanceDB database; default: sink.uri.")
    top_k: int = Field(100, ge=1, le=10_000, description="Candidates reranked per query.")
    text_column: str = Field("text", description="The table's column holding the documents' text (embed with "
                             "source.columns: [<text column>] to keep it).")
    query_instruction: str | None = Field(
        None, description="Instruction the queries are embedded with. Default: the table's own if it holds "
        "queries, else the model card's web-search one for last-token (Qwen3) models and none for others.")
    queries_per_scan: int = Field(1024, ge=1, description="Queries searched together in one pass over the table.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class RerankModelConfig(_Strict):
    name: str = Field(DEFAULT_RERANKER, description="A Qwen3-Reranker (HF id, local folder or pkg://).")
    instruction: str | None = Field(None, description="The <Instruct> of the template; default: the model card's "
                                    "web-search one.")
    max_tokens: int | None = Field(None, gt=1, description="Longest pair, template included; longer documents are "
                                   "cut. Default: the model's limit, at most 8192.")
    dtype: ModelDtype = ModelDtype.auto
    trust_remote_code: bool = False


class RerankMode(str, Enum):
    create = "create"
    overwrite = "overwrite"
    append = "append"


class RerankSinkConfig(TableSinkConfig):
    mode: RerankMode = Field(
        RerankMode.append,
        description="append: rerank only the queries the table does not hold yet, so re-running a finished "
        "job does nothing; create: fail if the table exists; overwrite: replace it at the end.",
    )


class RerankJobConfig(_Strict):
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


class FollowUpCandidates(_Strict):
    top_k: int = Field(100, ge=1, le=10_000, description="Candidates reranked per query.")
    text_column: str | None = Field(None, description="Default: the embedding job's source.text_column.")
    query_instruction: str | None = None
    queries_per_scan: int = Field(1024, ge=1)


class FollowUpSink(TableSinkConfig):
    uri: str | None = Field(None, description="Default: the embedding job's sink.uri.")  # type: ignore[assignment]
    # The table was just (re-)embedded: yesterday's reranking of the same queries is stale.
    mode: RerankMode = RerankMode.overwrite


class RerankSection(_Strict):
    """The embedding job's optional `rerank:` section: after embedding, rerank a query set against the table."""

    queries: QueriesConfig
    candidates: FollowUpCandidates = Field(default_factory=FollowUpCandidates)
    model: RerankModelConfig = Field(default_factory=RerankModelConfig)
    engine: EngineConfig | None = Field(None, description="Default: the embedding job's engine section.")
    sink: FollowUpSink

    def job_config(self, embed: Any) -> RerankJobConfig:
        """The reranking job this section describes, against the embedding job's (`embed`) table."""
        sink = self.sink.model_dump(mode="json")
        sink["uri"] = sink["uri"] or embed.sink.uri
        sink["storage_options"] = sink["storage_options"] or embed.sink.storage_options
        candidates = {**self.candidates.model_dump(mode="json"), "table": embed.sink.table, "uri": embed.sink.uri,
                      "storage_options": embed.sink.storage_options}
        candidates["text_column"] = self.candidates.text_column or embed.source.text_column
        return RerankJobConfig.model_validate({
            "queries": self.queries.model_dump(mode="json"),
            "candidates": candidates,
            "model": self.model.model_dump(mode="json"),
            "engine": (self.engine or embed.engine).model_dump(mode="json"),
            "sink": sink,
            "run": {**embed.run.model_dump(mode="json"), "summary_path": None},
        })
