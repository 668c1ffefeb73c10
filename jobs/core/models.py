"""The models a job runs, checked on the driver: the reranker, and the embedding model a vector table records.

Rerank (with candidates), eval and mine embed queries to search a table written by
`batch-embed embed`; the table's provenance says which model, instruction, size and
token limit its vectors came from, so the queries are embedded exactly the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.adapters import checked_adapter, table_adapter
from jobs.core.batching import RERANK_TEMPLATE_TOKENS
from jobs.core.config import ConfigError
from jobs.core.inputs import mean_chars
from jobs.core.paths import table_uri
from operators.infer.embedder import EmbedderSpec
from operators.infer.engine import RERANKER_OVERRIDES, EngineSpec
from operators.infer.lora_adapter import AdapterPayload
from operators.infer.model_spec import ModelNotFoundError, ModelSpec, effective_max_tokens, load_model_spec
from operators.infer.prompts import DEFAULT_QUERY_INSTRUCTION
from operators.infer.reranker import RerankerSpec
from operators.retrieve.top_k import RetrievalSpec, has_vector_index
from operators.storage import lance_storage_options
from operators.write.lance_sink import read_provenance
from operators.write.run_ledger import open_dataset

SAMPLE_TEXT_ROWS = 512


@dataclass
class QueryEmbedding:
    """How queries are embedded to search a vector table: its own model, instruction and size."""

    model: ModelSpec
    instruction: str
    dimensions: int
    max_tokens: int
    dtype: str
    adapter: AdapterPayload | None = None  # the LoRA adapter the table's vectors were embedded with

    def embedder_spec(self, gpus: float, engine: Any, document_column: str | None = None) -> EmbedderSpec:
        """`engine`: the job's EngineConfig."""
        spec = EngineSpec(model_path=self.model.path, max_model_len=self.max_tokens, dtype=self.dtype, gpus=gpus,
                          adapter=self.adapter, **engine.spec_fields(gpus, self.model.attention_heads))
        return EmbedderSpec(model=self.model, engine=spec, input_type="query", instruction=self.instruction,
                            max_tokens=self.max_tokens, dimensions=self.dimensions,
                            batch_tokens=engine.batch_tokens, document_column=document_column)


@dataclass
class VectorTable:
    """A table written by `batch-embed embed`, opened at its current version for searching."""

    dataset: Any  # the Lance dataset
    embedding: QueryEmbedding
    retrieval: RetrievalSpec  # exact top-k at the table's size, pinned to this version

    def mean_text_chars(self, column: str) -> float:
        """Mean length of the documents' text (first SAMPLE_TEXT_ROWS rows), for reranker batch sizes."""
        return mean_chars(self.dataset.head(SAMPLE_TEXT_ROWS, columns=[column]).column(0))


def open_vector_table(table: str, db_uri: str, text_column: str | None, query_instruction: str | None,
                      storage_options: dict[str, Any], top_k: int, dtype: str,
                      section: str = "candidates", search: str = "exact", adapter: str | None = None,
                      version: int | None = None) -> VectorTable:
    """The table, and how queries must be embedded to search it (its own recorded provenance).

    `text_column`: None when the documents' text is not needed; `section`: the config section
    errors name (`<section>.table`, `<section>.text_column`); `search`: `<section>.search`, auto / exact /
    index (auto: the table's vector index where it has one, operators/retrieve/top_k.py); `adapter`:
    `<section>.adapter`, where the table's LoRA adapter is now (default: where the table records it); `version`:
    a version of the table other than its current one (a gated rebuild's candidate, jobs/embed/gate.py)."""
    uri = table_uri(db_uri, table)
    options = lance_storage_options(storage_options)
    ds = open_dataset(uri, options)
    if ds is None:
        raise ConfigError(f"{section}.table: no table {table!r} at {db_uri}")
    if version is not None and version != ds.version:
        try:
            ds = ds.checkout_version(version)
        except (ValueError, OSError) as err:
            raise ConfigError(f"{section}.version: table {table!r} has no version {version} ({err})") from None
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
    # the base model's query vectors would not be comparable with the adapted ones: the same adapter, or an error
    lora = table_adapter(prov, adapter, storage_options, model, f"{section}.adapter")
    if query_instruction is not None:
        instruction = query_instruction
    elif prov.get("input_type") == "query":
        instruction = prov.get("instruction") or ""
    else:
        instruction = DEFAULT_QUERY_INSTRUCTION if model.appends_end_token else ""
    emb = QueryEmbedding(model=model, instruction=instruction, dimensions=int(prov["dimensions"]),
                         max_tokens=int(prov["max_tokens"]), dtype=dtype, adapter=lora)
    indexed = has_vector_index(ds)
    if search == "index" and not indexed:
        raise ConfigError(f"{section}.search: index, but table {table!r} has no vector index yet (upkeep builds one "
                          "from upkeep.index_min_rows rows; `batch-embed maintain` builds it now); use auto or exact")
    retrieval = RetrievalSpec(uri=uri, version=ds.version, top_k=top_k, text_column=text_column,
                              storage_options=options, search="index" if search != "exact" and indexed else "exact")
    return VectorTable(dataset=ds, embedding=emb, retrieval=retrieval)


def checked_model(name: str, max_tokens: int | None, section: str = "model") -> tuple[ModelSpec, int]:
    """A model's spec and the token limit a job will use (`max_tokens`, or the model's own limit, at most
    8192), checked against the model's own config; errors name `<section>.name` / `<section>.max_tokens`."""
    try:
        model = load_model_spec(name)
    except ModelNotFoundError as err:
        raise ConfigError(f"{section}.name: {err}") from None
    limit = effective_max_tokens(model, max_tokens)
    if model.max_positions and limit > model.max_positions:
        raise ConfigError(f"{section}.max_tokens: {limit} is more than the model's limit of "
                          f"{model.max_positions} tokens")
    return model, limit


@dataclass(frozen=True)
class RerankerModel:
    """A checked reranker: its spec, token limit and LoRA adapter (`<section>.adapter`), if any."""

    model: ModelSpec
    max_tokens: int
    adapter: AdapterPayload | None = None

    @property
    def adapter_hash(self) -> str | None:
        return self.adapter.content_hash if self.adapter else None

    def spec(self, m: Any, engine: Any, gpus: float) -> RerankerSpec:
        """`m`: the RerankModelConfig; `engine`: the job's EngineConfig."""
        spec = EngineSpec(model_path=self.model.path, max_model_len=self.max_tokens, dtype=m.dtype.value, gpus=gpus,
                          trust_remote_code=m.trust_remote_code, hf_overrides=RERANKER_OVERRIDES,
                          adapter=self.adapter, **engine.spec_fields(gpus, self.model.attention_heads))
        return RerankerSpec(engine=spec, instruction=m.instruction, max_tokens=self.max_tokens,
                            batch_tokens=engine.batch_tokens)


def reranker_model(m: Any, section: str = "model") -> RerankerModel:
    """The reranker, checked; `m`: a RerankModelConfig; errors name `<section>.<key>`.

    Its adapter is served by vLLM's LoRA on the sequence-classification model the reranker is converted to
    (RERANKER_OVERRIDES): the adapter's layers apply, and the yes/no head is the adapted model's own."""
    model, max_tokens = checked_model(m.name, m.max_tokens, section)
    if model.pooling != "last":
        raise ConfigError(f"{section}.name: {m.name} is not a Qwen3-Reranker-style causal LM; this job scores "
                          "P(yes) with the Qwen3-Reranker template")
    if max_tokens < RERANK_TEMPLATE_TOKENS + 16:
        raise ConfigError(f"{section}.max_tokens: {max_tokens} leaves no room for a query and a document next to "
                          "the reranker's template")
    adapter = checked_adapter(m.adapter, m.storage_options, model, m.name, m.adapter_base_check, f"{section}.adapter")
    return RerankerModel(model, max_tokens, adapter.payload() if adapter else None)
