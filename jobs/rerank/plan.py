"""Turn a reranking config into a runnable plan, on the driver, before Ray or any engine starts.

Checks what needs files: the input's columns, the reranker's config, the
candidates table (its provenance says which model and instruction its vectors
came from, so the queries are embedded the same way), the output table's
provenance when appending; and finds an unfinished run of this job to resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from jobs.core.batching import pair_tokens, rows_per_batch, text_tokens
from jobs.core.config import ConfigError
from jobs.core.inputs import SourceRows, input_shards, mean_chars, query_columns, sample_rows
from jobs.core.models import QueryEmbedding, RerankerModel, open_vector_table, reranker_model
from jobs.core.table_target import TableTarget, plan_table
from jobs.rerank.config import RerankJobConfig
from operators.infer.embedder import EmbedderSpec
from operators.infer.reranker import RerankerSpec
from operators.prepare.fingerprints import Provenance
from operators.read.pairs_source import PairColumns
from operators.read.parquet_source import ShardInfo
from operators.retrieve.top_k import RetrievalSpec
from operators.write.lance_sink import read_provenance
from operators.write.rerank_sink import rerank_schema

_SAMPLE_ROWS = 512


@dataclass
class RerankPlan(SourceRows):
    config: RerankJobConfig
    fs: Any
    shards: list[ShardInfo]
    reranker: RerankerModel
    provenance: dict[str, Any]
    target: TableTarget
    queries_per_batch: int  # reranker batches, in queries
    pair_columns: PairColumns | None = None  # pairs input
    query_embedding: QueryEmbedding | None = None  # queries + candidates input
    query_rows_per_batch: int = 0  # query embedder batches, in queries
    retrieval: RetrievalSpec | None = None

    def reranker_spec(self, gpus: float) -> RerankerSpec:
        return self.reranker.spec(self.config.model, self.config.engine, gpus)

    def embedder_spec(self, gpus: float) -> EmbedderSpec:
        assert self.query_embedding is not None
        return self.query_embedding.embedder_spec(gpus, self.config.engine)

    @property
    def validator_provenance(self) -> Provenance:
        """What the row validator fingerprints (the reranking job keys on query ids only)."""
        return Provenance(model=self.config.model.name, instruction=self.config.model.instruction or "",
                          input_type="rerank", dimensions=0, max_tokens=self.reranker.max_tokens)


def check_existing(cfg: RerankJobConfig, schema: pa.Schema, provenance: dict[str, Any], uri: str) -> None:
    """An existing table must have been reranked with the same model, instruction and token limit."""
    have = read_provenance(schema)
    if have is None or have.get("kind") != "rerank":
        raise ConfigError(f"sink.table: {uri} was not written by batch-embed rerank; use sink.mode: overwrite or "
                          "another sink.table")
    for key, setting in [("model", "model.name"), ("instruction", "model.instruction"),
                         ("max_tokens", "model.max_tokens"), ("adapter", "model.adapter")]:
        if have.get(key) != provenance.get(key):
            raise ConfigError(f"{setting}: the existing table {cfg.sink.table} was reranked with {key}="
                              f"{have.get(key)!r}, this run would use {provenance.get(key)!r}; scores would not be "
                              "comparable. Use sink.mode: overwrite, or another sink.table")


def plan_rerank_job(cfg: RerankJobConfig) -> RerankPlan:
    ranker = reranker_model(cfg.model)
    max_tokens = ranker.max_tokens
    eng = cfg.engine
    pair_columns = query_embedding = retrieval = None
    query_rows_per_batch = 0
    if cfg.pairs is not None:
        p = cfg.pairs
        pair_columns = PairColumns(p.query_id_column, p.query_column, p.doc_id_column, p.doc_text_column,
                                   p.score_column)
        cols = [("pairs.query_id_column", p.query_id_column), ("pairs.query_column", p.query_column),
                ("pairs.doc_id_column", p.doc_id_column), ("pairs.doc_text_column", p.doc_text_column)]
        if p.score_column:
            cols.append(("pairs.score_column", p.score_column))
        fs, shards = input_shards(p.uri, p.storage_options, cols, "pairs.uri", p.retry.policy())
        sample = sample_rows(fs, shards[0], [p.query_id_column, p.query_column, p.doc_text_column], _SAMPLE_ROWS)
        groups = max(1, len(set(sample.column(p.query_id_column).to_pylist())))
        pairs_per_query = max(1.0, sample.num_rows / groups)
        query_chars, doc_chars = mean_chars(sample.column(p.query_column)), mean_chars(sample.column(p.doc_text_column))
        candidates: dict[str, Any] = {}
    else:
        q, cand = cfg.queries, cfg.candidates
        assert q is not None and cand is not None
        fs, shards = input_shards(q.uri, q.storage_options, query_columns(q), "queries.uri", q.retry.policy())
        table = open_vector_table(cand.table, cfg.candidates_uri, cand.text_column, cand.query_instruction,
                                  cand.storage_options or cfg.sink.storage_options, cand.top_k, cfg.model.dtype.value,
                                  search=cand.search, adapter=cand.adapter)
        query_embedding, retrieval = table.embedding, table.retrieval
        query_chars = mean_chars(sample_rows(fs, shards[0], [q.text_column]).column(0))
        query_rows_per_batch = rows_per_batch(eng.batch_tokens, text_tokens(query_chars, query_embedding.max_tokens))
        pairs_per_query = float(min(cand.top_k, max(1, table.dataset.count_rows())))
        doc_chars = table.mean_text_chars(cand.text_column)
        candidates = {"candidates_table": retrieval.uri, "candidates_version": retrieval.version,
                      "top_k": cand.top_k, "query_instruction": query_embedding.instruction}
    queries_per_batch = rows_per_batch(eng.batch_tokens, pairs_per_query * pair_tokens(query_chars, doc_chars,
                                                                                       max_tokens))

    provenance = {"kind": "rerank", "model": cfg.model.name, "instruction": cfg.model.instruction,
                  "max_tokens": max_tokens, **candidates}
    if ranker.adapter_hash:  # recorded only when there is one: tables from before adapters stay appendable
        provenance["adapter"] = ranker.adapter_hash
    listing = [(s.path, s.num_rows) for s in shards]
    if retrieval is not None:  # a resumed run must see the candidates its first attempt saw
        listing.append((f"candidates:{retrieval.uri}", retrieval.version))
    target = plan_table(cfg.sink, rerank_schema(provenance), listing, "append (skips finished queries) or overwrite",
                        lambda schema, uri: check_existing(cfg, schema, provenance, uri))
    return RerankPlan(
        config=cfg, fs=fs, shards=shards, reranker=ranker, provenance=provenance, target=target,
        queries_per_batch=queries_per_batch,
        pair_columns=pair_columns, query_embedding=query_embedding, retrieval=retrieval,
        query_rows_per_batch=query_rows_per_batch,
    )


def precheck(cfg: RerankJobConfig) -> None:
    """What can be checked before the candidates table exists (the embedding job's `rerank:` section)."""
    reranker_model(cfg.model)
    if cfg.queries is not None:
        q = cfg.queries
        input_shards(q.uri, q.storage_options, query_columns(q), "queries.uri")
