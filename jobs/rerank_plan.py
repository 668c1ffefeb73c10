"""Turn a reranking config into a runnable plan, on the driver, before Ray or any engine starts.

Checks what needs files: the input's columns, the reranker's config, the
candidates table (its provenance says which model and instruction its vectors
came from, so the queries are embedded the same way), the output table's
provenance when appending; and finds an unfinished run of this job to resume.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from jobs.config import DEFAULT_QUERY_INSTRUCTION, ConfigError
from jobs.plan import SourceRows, find_unfinished_run, input_shards, mean_chars, rows_per_batch, sample_rows
from jobs.rerank_config import RerankJobConfig, RerankModelConfig
from operators import progress as prog
from operators.candidate_retriever import RetrievalSpec
from operators.embedder import EmbedderSpec
from operators.engine import RERANKER_OVERRIDES, EngineSpec
from operators.lance_sink import SinkSpec, read_provenance, table_uri
from operators.model_spec import ModelNotFoundError, ModelSpec, effective_max_tokens, load_model_spec
from operators.pairs_source import PairColumns
from operators.parquet_source import ShardInfo
from operators.prompts import RERANK_PREFIX, RERANK_SUFFIX
from operators.rerank_sink import rerank_schema
from operators.reranker import RerankerSpec
from operators.run_ledger import max_fragment_id, open_dataset
from operators.storage import lance_storage_options
from operators.vectors import Provenance

_CHARS_PER_TOKEN = 4.0
_TEMPLATE_TOKENS = (len(RERANK_PREFIX) + len(RERANK_SUFFIX) + 40) // 4
_SAMPLE_ROWS = 512


@dataclass
class QueryEmbedding:
    """How mode (b) embeds queries: the candidates table's own model, instruction and size."""

    model: ModelSpec
    instruction: str
    dimensions: int
    max_tokens: int
    dtype: str

    def embedder_spec(self, gpus: float, engine: Any, document_column: str | None = None) -> EmbedderSpec:
        """`engine`: the job's EngineConfig."""
        spec = EngineSpec(model_path=self.model.path, max_model_len=self.max_tokens, dtype=self.dtype, gpus=gpus,
                          extra=dict(engine.vllm), cpu_scheduling=engine.cpu_scheduling.value)
        return EmbedderSpec(model=self.model, engine=spec, input_type="query", instruction=self.instruction,
                            max_tokens=self.max_tokens, dimensions=self.dimensions, width=self.dimensions,
                            batch_tokens=engine.batch_tokens, document_column=document_column)


@dataclass
class RerankPlan(SourceRows):
    config: RerankJobConfig
    fs: Any
    shards: list[ShardInfo]
    model: ModelSpec
    max_tokens: int
    instruction: str | None
    provenance: dict[str, Any]
    sink: SinkSpec
    main_version: int | None
    rejected_version: int | None
    queries_per_batch: int  # reranker batches, in queries
    queries_per_fragment: int
    run_id: str
    source_signature: str
    fragment_floor: int
    pair_columns: PairColumns | None = None  # pairs input
    query_embedding: QueryEmbedding | None = None  # queries + candidates input
    query_rows_per_batch: int = 0  # query embedder batches, in queries
    retrieval: RetrievalSpec | None = None
    resuming: bool = False
    done: prog.Progress = field(default_factory=dict)

    def reranker_spec(self, gpus: float) -> RerankerSpec:
        return reranker_spec(self.config.model, self.model, self.max_tokens, self.config.engine, gpus)

    def embedder_spec(self, gpus: float) -> EmbedderSpec:
        assert self.query_embedding is not None
        return self.query_embedding.embedder_spec(gpus, self.config.engine)

    @property
    def validator_provenance(self) -> Provenance:
        """What the row validator fingerprints (the reranking job keys on query ids only)."""
        return Provenance(model=self.config.model.name, instruction=self.instruction or "", input_type="rerank",
                          dimensions=0, max_tokens=self.max_tokens)


def reranker_model(m: RerankModelConfig, section: str = "model") -> tuple[ModelSpec, int]:
    """The reranker's spec and token limit, checked; errors name `<section>.<key>`."""
    try:
        model = load_model_spec(m.name)
    except ModelNotFoundError as err:
        raise ConfigError(f"{section}.name: {err}") from None
    max_tokens = effective_max_tokens(model, m.max_tokens)
    if model.max_positions and max_tokens > model.max_positions:
        raise ConfigError(f"{section}.max_tokens: {max_tokens} is more than the model's limit of "
                          f"{model.max_positions} tokens")
    if model.pooling != "last":
        raise ConfigError(f"{section}.name: {m.name} is not a Qwen3-Reranker-style causal LM; this job scores "
                          "P(yes) with the Qwen3-Reranker template")
    if max_tokens < _TEMPLATE_TOKENS + 16:
        raise ConfigError(f"{section}.max_tokens: {max_tokens} leaves no room for a query and a document next to "
                          "the reranker's template")
    return model, max_tokens


def reranker_spec(m: RerankModelConfig, model: ModelSpec, max_tokens: int, engine: Any, gpus: float) -> RerankerSpec:
    """`engine`: the job's EngineConfig."""
    spec = EngineSpec(model_path=model.path, max_model_len=max_tokens, dtype=m.dtype.value, gpus=gpus,
                      trust_remote_code=m.trust_remote_code, extra=dict(engine.vllm), hf_overrides=RERANKER_OVERRIDES,
                      cpu_scheduling=engine.cpu_scheduling.value)
    return RerankerSpec(engine=spec, instruction=m.instruction, max_tokens=max_tokens,
                        batch_tokens=engine.batch_tokens)


def open_candidates(table: str, db_uri: str, text_column: str | None, query_instruction: str | None,
                    storage_options: dict[str, Any], top_k: int, dtype: str,
                    section: str = "candidates") -> tuple[QueryEmbedding, RetrievalSpec, Any]:
    """The candidates table, and how queries must be embedded to search it (its own recorded provenance).

    `text_column`: None when the documents' text is not needed; `section`: the config section
    errors name (`<section>.table`, `<section>.text_column`)."""
    uri = table_uri(db_uri, table)
    options = lance_storage_options(storage_options)
    ds = open_dataset(uri, options)
    if ds is None:
        raise ConfigError(f"{section}.table: no table {table!r} at {db_uri}")
    prov = read_provenance(ds.schema)
    if prov is None:
        raise ConfigError(f"{section}.table: {uri} was not written by batch-embed embed (no provenance metadata), "
                          "so the model to embed the queries with is unknown")
    if text_column is not None and text_column not in ds.schema.names:
        raise ConfigError(f"{section}.text_column: table {table!r} has no column {text_column!r} (it has "
                          f"{ds.schema.names}); embed it with source.columns: [<the text column>] so the documents "
                          "can be read back")
    try:
        model = load_model_spec(prov["model"])
    except ModelNotFoundError as err:
        raise ConfigError(f"{section}.table: the table was embedded with {err}") from None
    if query_instruction is not None:
        instruction = query_instruction
    elif prov.get("input_type") == "query":
        instruction = prov.get("instruction") or ""
    else:
        instruction = DEFAULT_QUERY_INSTRUCTION if model.appends_end_token else ""
    emb = QueryEmbedding(model=model, instruction=instruction, dimensions=int(prov["dimensions"]),
                         max_tokens=int(prov["max_tokens"]), dtype=dtype)
    retrieval = RetrievalSpec(uri=uri, version=ds.version, top_k=top_k, text_column=text_column or "",
                              storage_options=options)
    return emb, retrieval, ds


def _check_existing(cfg: RerankJobConfig, schema: pa.Schema, provenance: dict[str, Any], uri: str) -> None:
    have = read_provenance(schema)
    if have is None or have.get("kind") != "rerank":
        raise ConfigError(f"sink.table: {uri} was not written by batch-embed rerank; use sink.mode: overwrite or "
                          "another sink.table")
    for key, setting in [("model", "model.name"), ("instruction", "model.instruction"),
                         ("max_tokens", "model.max_tokens")]:
        if have.get(key) != provenance.get(key):
            raise ConfigError(f"{setting}: the existing table {cfg.sink.table} was reranked with {key}="
                              f"{have.get(key)!r}, this run would use {provenance.get(key)!r}; scores would not be "
                              "comparable. Use sink.mode: overwrite, or another sink.table")


def plan_rerank_job(cfg: RerankJobConfig) -> RerankPlan:
    model, max_tokens = reranker_model(cfg.model)
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
        fs, shards = input_shards(p.uri, p.storage_options, cols, "pairs.uri")
        sample = sample_rows(fs, shards[0], [p.query_id_column, p.doc_text_column], _SAMPLE_ROWS)
        groups = max(1, len(set(sample.column(p.query_id_column).to_pylist())))
        pairs_per_query = max(1.0, sample.num_rows / groups)
        doc_chars = mean_chars(sample.column(p.doc_text_column))
        candidates: dict[str, Any] = {}
    else:
        q = cfg.queries
        cand = cfg.candidates
        assert q is not None and cand is not None
        fs, shards = input_shards(q.uri, q.storage_options, query_columns(q), "queries.uri")
        query_embedding, retrieval, cand_ds = open_candidates(
            cand.table, cfg.candidates_uri, cand.text_column, cand.query_instruction,
            cand.storage_options or cfg.sink.storage_options, cand.top_k, cfg.model.dtype.value)
        query_rows_per_batch = rows_per_batch(fs, shards[0], q.text_column, eng.batch_tokens)
        sample = cand_ds.head(_SAMPLE_ROWS, columns=[cand.text_column])
        pairs_per_query = float(min(cand.top_k, max(1, cand_ds.count_rows())))
        doc_chars = mean_chars(sample.column(0))
        candidates = {"candidates_table": retrieval.uri, "candidates_version": retrieval.version,
                      "top_k": cand.top_k, "query_instruction": query_embedding.instruction}
    pair_tokens = min(max_tokens, _TEMPLATE_TOKENS + 16 + doc_chars / _CHARS_PER_TOKEN)
    queries_per_batch = int(max(1, min(4096, eng.batch_tokens / (pairs_per_query * pair_tokens))))
    queries_per_fragment = int(max(1, cfg.sink.rows_per_fragment / pairs_per_query))

    provenance = {"kind": "rerank", "model": cfg.model.name, "instruction": cfg.model.instruction,
                  "max_tokens": max_tokens, **candidates}
    schema = rerank_schema(provenance)
    options = lance_storage_options(cfg.sink.storage_options)
    main_uri = table_uri(cfg.sink.uri, cfg.sink.table)
    rejected_uri = table_uri(cfg.sink.uri, f"{cfg.sink.table}_rejected")
    main_ds, rejected_ds = open_dataset(main_uri, options), open_dataset(rejected_uri, options)
    listing = [(s.path, s.num_rows) for s in shards]
    if retrieval is not None:  # a resumed run must see the candidates its first attempt saw
        listing.append((f"candidates:{retrieval.uri}", retrieval.version))
    signature = prog.source_signature(listing)
    mode = cfg.sink.mode.value
    resume = None if mode == "overwrite" else find_unfinished_run(cfg.sink.table, main_ds, rejected_ds, signature)
    if main_ds is not None and mode == "create" and resume is None:
        raise ConfigError(f"sink.table: table {cfg.sink.table!r} already exists at {main_uri}; use sink.mode: "
                          "append (skips finished queries) or overwrite")
    if main_ds is not None and mode != "overwrite":
        _check_existing(cfg, main_ds.schema, provenance, main_uri)
    return RerankPlan(
        config=cfg, fs=fs, shards=shards, model=model, max_tokens=max_tokens, instruction=cfg.model.instruction,
        provenance=provenance,
        sink=SinkSpec(main_uri=main_uri, rejected_uri=rejected_uri, schema=schema, storage_options=options),
        main_version=main_ds.version if main_ds is not None else None,
        rejected_version=rejected_ds.version if rejected_ds is not None else None,
        queries_per_batch=queries_per_batch, queries_per_fragment=queries_per_fragment,
        run_id=resume[0] if resume else uuid.uuid4().hex, source_signature=signature,
        fragment_floor=resume[2] if resume else max_fragment_id(main_ds),
        pair_columns=pair_columns, query_embedding=query_embedding, retrieval=retrieval,
        query_rows_per_batch=query_rows_per_batch,
        resuming=resume is not None, done=resume[1] if resume else {},
    )



def query_columns(q: Any) -> list[tuple[str, str]]:
    """The (setting, column) pairs of a `queries:` section."""
    return [("queries.id_column", q.id_column), ("queries.text_column", q.text_column)]


def precheck(cfg: RerankJobConfig) -> None:
    """What can be checked before the candidates table exists (the embedding job's `rerank:` section)."""
    reranker_model(cfg.model)
    if cfg.queries is not None:
        q = cfg.queries
        input_shards(q.uri, q.storage_options, query_columns(q), "queries.uri")
