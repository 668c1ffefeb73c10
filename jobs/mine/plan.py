"""The mining job's plan: the driver's checks, done before Ray starts (input columns, the table, the reranker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.batching import pair_tokens, rows_per_batch, text_tokens
from jobs.core.inputs import input_shards, mean_chars, sample_rows
from jobs.core.models import QueryEmbedding, RerankerModel, open_vector_table, reranker_model
from jobs.mine.config import MineJobConfig, Scorer
from operators.retrieve.top_k import RetrievalSpec


@dataclass
class MinePlan:
    """The driver's checks, done before Ray starts: input columns, candidates table, reranker."""

    fs: Any
    shards: list
    embedding: QueryEmbedding
    retrieval: RetrievalSpec
    reranker: RerankerModel | None
    rows_per_batch: int  # embedder batches, in pairs (each embeds a query and its positive)
    reranker_rows_per_batch: int = 1  # reranker batches, in pairs (each scores range_max + 1 documents)


def plan_mine_job(cfg: MineJobConfig) -> MinePlan:
    p, c, rules = cfg.pairs, cfg.candidates, cfg.mining
    fs, shards = input_shards(p.uri, p.storage_options, [("pairs.query_column", p.query_column),
                                                         ("pairs.positive_column", p.positive_column)], "pairs.uri",
                              p.retry.policy())
    # One more candidate than considered: the positive itself is often in the table, and is dropped.
    table = open_vector_table(c.table, c.uri, c.text_column, c.query_instruction, c.storage_options,
                              rules.range_max + 1, cfg.dtype.value, search=c.search, adapter=c.adapter)
    emb = table.embedding
    sample = sample_rows(fs, shards[0], [p.query_column, p.positive_column])
    query_chars, positive_chars = mean_chars(sample.column(0)), mean_chars(sample.column(1))
    pair = text_tokens(query_chars, emb.max_tokens) + text_tokens(positive_chars, emb.max_tokens)
    ranker = reranker_model(cfg.reranker, "reranker") if rules.scorer is Scorer.reranker and cfg.reranker else None
    reranker_rows = 1
    if ranker is not None:  # the positive and every candidate, each a pair with the query
        doc_chars = table.mean_text_chars(c.text_column)
        reranker_rows = rows_per_batch(cfg.engine.batch_tokens,
                                       (rules.range_max + 2) * pair_tokens(query_chars, doc_chars, ranker.max_tokens))
    return MinePlan(fs=fs, shards=shards, embedding=emb, retrieval=table.retrieval, reranker=ranker,
                    rows_per_batch=rows_per_batch(cfg.engine.batch_tokens, pair),
                    reranker_rows_per_batch=reranker_rows)
