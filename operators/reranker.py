"""The reranking operator: Qwen3-Reranker in one vLLM engine per Ray actor, P("yes") per pair.

Column contract:
- needs `query`, `doc_text`.
- adds `rerank_score` (float32: P("yes") from the no/yes logits of the last position; null if
  the pair could not be scored), `n_tokens` (int32), `truncated` (bool: the document was cut
  to fit `max_tokens`), `reject_reason` (null, or `query_too_long` / `empty_document`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from operators.contract import require_columns
from operators.engine import EngineSpec, PoolingEngine
from operators.prompts import (
    RERANK_PREFIX,
    RERANK_SUFFIX,
    assemble_rerank_ids,
    group_by_token_budget,
    rerank_pair_head,
)

REQUIRED = ("query", "doc_text")
_CHARS_PER_TOKEN_BOUND = 64


@dataclass(frozen=True)
class RerankerSpec:
    engine: EngineSpec  # with hf_overrides=RERANKER_OVERRIDES
    instruction: str | None  # None: the model card's web-search instruction
    max_tokens: int
    batch_tokens: int = 16384


class RerankTokenizer:
    """Builds the model card's exact input ids; text that spells special tokens stays plain text."""

    def __init__(self, model_path: str, max_tokens: int, trust_remote_code: bool = False):
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self._max_tokens = max_tokens
        # The template's own special tokens are meant as such: parsed, not split.
        self.prefix = self._tok(RERANK_PREFIX, add_special_tokens=False)["input_ids"]
        self.suffix = self._tok(RERANK_SUFFIX, add_special_tokens=False)["input_ids"]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self._tok(texts, add_special_tokens=False, split_special_tokens=True,
                         return_attention_mask=False)["input_ids"]

    def encode(self, instruction: str | None, queries: list[str], docs: list[str]):
        """(ids or None, truncated, reason) per pair."""
        cap = self._max_tokens * _CHARS_PER_TOKEN_BOUND
        heads = [rerank_pair_head(instruction, q) for q in queries]
        bodies = self._ids([h + d[:cap] for h, d in zip(heads, docs, strict=True)])
        head_lens = [len(ids) for ids in self._ids(heads)]
        out = []
        for body, head_len, doc in zip(bodies, head_lens, docs, strict=True):
            if not doc.strip():
                out.append((None, False, "empty_document"))
                continue
            try:
                ids, cut = assemble_rerank_ids(self.prefix, body, self.suffix, self._max_tokens, head_len)
            except ValueError:
                out.append((None, False, "query_too_long"))
                continue
            out.append((ids, cut or len(doc) > cap, None))
        return out


class Reranker:
    """Ray Data callable class: heavy set-up (tokenizer, vLLM engine) once per actor."""

    def __init__(self, spec: RerankerSpec):
        self.spec = spec
        self.tokenizer = RerankTokenizer(spec.engine.model_path, spec.max_tokens, spec.engine.trust_remote_code)
        self.engine = PoolingEngine(spec.engine)

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "Reranker")
        encoded = self.tokenizer.encode(self.spec.instruction, batch.column("query").to_pylist(),
                                        batch.column("doc_text").to_pylist())
        rows = [i for i, (ids, _, _) in enumerate(encoded) if ids is not None]
        lengths = [len(encoded[i][0]) for i in rows]
        scores = np.full(batch.num_rows, np.nan, dtype=np.float32)
        for group in group_by_token_budget(lengths, self.spec.batch_tokens):
            picked = [rows[g] for g in group]
            scores[picked] = self.engine.classify([encoded[i][0] for i in picked])
        return (
            batch.append_column("rerank_score", pa.array(scores, mask=np.isnan(scores)))
            .append_column("n_tokens", pa.array([len(e[0]) if e[0] else 0 for e in encoded], pa.int32()))
            .append_column("truncated", pa.array([e[1] for e in encoded], pa.bool_()))
            .append_column("reject_reason", pa.array([e[2] for e in encoded], pa.string()))
        )
