"""Turn an eval config into a plan, on the driver, before Ray or any engine starts.

Reads the judgements (they are small next to the corpus), checks that their ids meet
the table's and the queries' ids, and settles the sizes to evaluate at; every
problem is a ConfigError naming the setting, column or row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.batching import pair_tokens, rows_per_batch, text_tokens
from jobs.core.config import ConfigError
from jobs.core.inputs import input_shards, mean_chars, query_columns, sample_rows
from jobs.core.metrics import depth, judged_queries
from jobs.core.models import QueryEmbedding, RerankerModel, open_vector_table, reranker_model
from jobs.core.qrels import Qrels, missing_doc_ids, read_qrels
from jobs.eval.config import EvalJobConfig
from operators.retrieve.top_k import RetrievalSpec


@dataclass
class EvalPlan:
    config: EvalJobConfig
    fs: Any
    shards: list
    embedding: QueryEmbedding
    retrieval: RetrievalSpec
    dims: list[int]
    stored_dims: int
    bytes_per_value: int
    qrels: Qrels
    judged: set[str]
    judged_docs_missing: int  # judged documents whose id is not in the table
    query_rows_per_batch: int
    reranker: RerankerModel | None = None
    rerank_queries_per_batch: int = 1  # reranker batches, in queries (each with rerank_top_k pairs)


def plan_eval(cfg: EvalJobConfig) -> EvalPlan:
    t, q, e = cfg.table, cfg.queries, cfg.eval
    fs, shards = input_shards(q.uri, q.storage_options, query_columns(q), "queries.uri", q.retry.policy())
    try:
        table = open_vector_table(t.name, t.uri, t.text_column if e.rerank else None, t.query_instruction,
                                  t.storage_options, 1, cfg.dtype.value, section="table", adapter=t.adapter,
                                  version=t.version)
    except ConfigError as err:
        raise ConfigError(str(err).replace("table.table:", "table.name:", 1)) from None
    ds, emb = table.dataset, table.embedding
    vector_type = ds.schema.field("vector").type
    stored = vector_type.list_size
    dims = e.dims or [stored]
    too_big = [d for d in dims if d > stored]
    if too_big:
        raise ConfigError(f"eval.dims: {too_big} larger than the table's {stored}-dimensional vectors; Matryoshka "
                          "sizes can only be cut from a full-size table (embed with the model's full size)")
    qrels = read_qrels(cfg.qrels)
    judged = judged_queries(qrels.judgements)
    if not judged:
        raise ConfigError(f"qrels.relevance_column: no judgement in {cfg.qrels.uri} has relevance >= 1; "
                          "nothing to evaluate")
    doc_ids = {d for qid in judged for d, r in qrels.judgements[qid].items() if r >= 1}
    missing = missing_doc_ids(ds, "id", doc_ids)
    if missing == doc_ids:
        sample = ds.head(3, columns=["id"]).column("id").to_pylist()
        raise ConfigError(f"qrels.doc_id_column: none of the {len(doc_ids)} relevant documents is in table "
                          f"{t.name!r} (judged ids like {sorted(missing)[:3]}, table ids like {sample}); the qrels "
                          "must use the ids the table was embedded with")
    query_chars = mean_chars(sample_rows(fs, shards[0], [q.text_column]).column(0))
    ranker = reranker_model(cfg.reranker, "reranker") if e.rerank and cfg.reranker is not None else None
    rerank_per_batch = 1
    if ranker is not None:
        doc_chars = table.mean_text_chars(t.text_column)
        rerank_per_batch = rows_per_batch(cfg.engine.batch_tokens,
                                          e.rerank_top_k * pair_tokens(query_chars, doc_chars, ranker.max_tokens))
    top_k = max(depth(e.metrics), e.rerank_top_k if e.rerank else 0)
    retrieval = RetrievalSpec(uri=table.retrieval.uri, version=table.retrieval.version, top_k=top_k,
                              dims=tuple(dims), text_column=t.text_column if e.rerank else None, every_size=True,
                              storage_options=table.retrieval.storage_options)
    return EvalPlan(
        config=cfg, fs=fs, shards=shards, embedding=emb, retrieval=retrieval, dims=dims, stored_dims=stored,
        bytes_per_value=vector_type.value_type.bit_width // 8, qrels=qrels, judged=judged,
        judged_docs_missing=len(missing),
        query_rows_per_batch=rows_per_batch(cfg.engine.batch_tokens, text_tokens(query_chars, emb.max_tokens)),
        reranker=ranker, rerank_queries_per_batch=rerank_per_batch,
    )
