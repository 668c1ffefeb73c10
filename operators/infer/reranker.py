"""The reranking operator: Qwen3-Reranker in one vLLM engine per Ray actor, P("yes") per pair.

A row is one query with its candidates, so a query's ranks never straddle batches.

Column contract:
- needs `text` (the query), `doc_text` (list of candidate documents), `action` (rows whose
  action is `new` or `changed` are scored; others pass through with null lists).
- adds, one element per candidate: `rerank_score` (float32 P("yes") from the no/yes logits of
  the last position; null if the pair could not be scored), `rank` (int32, 1 = best among the
  scored pairs, ties in candidate order; null where unscored), `pair_tokens` (int32),
  `truncated` (bool: the document was cut to fit `max_tokens`), `pair_reason` (null, or
  `query_too_long` / `empty_document`); and `n_tokens` (int64, the row's tokens in total).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns
from operators.infer.batching import group_by_token_budget
from operators.infer.engine import EngineSpec, apply_node_threads, make_engine
from operators.infer.engine_clock import EngineClock
from operators.infer.prompts import (
    RERANK_PREFIX,
    RERANK_SUFFIX,
    assemble_rerank_ids,
    clip_texts,
    rerank_pair_head,
)

REQUIRED = ("text", "doc_text", "action")
SCORE_ACTIONS = ("new", "changed")


@dataclass(frozen=True)
class RerankerSpec:
    engine: EngineSpec  # with hf_overrides=RERANKER_OVERRIDES
    instruction: str | None  # None: the model card's web-search instruction
    max_tokens: int
    batch_tokens: int = 16384
    ledger: Any = None  # the run's TimeLedger actor (operators/infer/engine_clock.py); None: not timed


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
        heads = [rerank_pair_head(instruction, q) for q in queries]
        clipped = clip_texts(docs, self._max_tokens)
        bodies = self._ids([h + d for h, d in zip(heads, clipped, strict=True)])
        head_lens = [len(ids) for ids in self._ids(heads)]
        out = []
        for body, head_len, doc, short in zip(bodies, head_lens, docs, clipped, strict=True):
            if not doc.strip():
                out.append((None, False, "empty_document"))
                continue
            try:
                ids, cut = assemble_rerank_ids(self.prefix, body, self.suffix, self._max_tokens, head_len)
            except ValueError:
                out.append((None, False, "query_too_long"))
                continue
            out.append((ids, cut or len(short) < len(doc), None))
        return out


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank by descending score, NaN (unscored) last and ranked -1; ties keep their order."""
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    ranks = np.empty(len(scores), dtype=np.int32)
    ranks[order] = np.arange(1, len(scores) + 1, dtype=np.int32)
    return np.where(np.isnan(scores), -1, ranks)


class Reranker:
    """Ray Data callable class: heavy set-up (tokenizer, vLLM engine) once per actor."""

    def __init__(self, spec: RerankerSpec):
        apply_node_threads()  # first: before anything loads torch
        self.clock = EngineClock(spec.ledger)
        self.spec = spec
        self.tokenizer = RerankTokenizer(spec.engine.model_path, spec.max_tokens, spec.engine.trust_remote_code)
        self.engine = self.clock.timed(make_engine(spec.engine))
        self.clock.ready()

    def score_pairs(self, queries: list[str], docs: list[str]) -> tuple[np.ndarray, list]:
        """P("yes") per pair (NaN where unscored) and the (ids, truncated, reason) encodings."""
        encoded = self.tokenizer.encode(self.spec.instruction, queries, docs)
        rows = [i for i, (ids, _, _) in enumerate(encoded) if ids is not None]
        scores = np.full(len(docs), np.nan, dtype=np.float32)
        for group in group_by_token_budget([len(encoded[i][0]) for i in rows], self.spec.batch_tokens):
            picked = [rows[g] for g in group]
            scores[picked] = self.engine.classify([encoded[i][0] for i in picked])
        return scores, encoded

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "Reranker")
        active = pc.is_in(batch.column("action"), pa.array(SCORE_ACTIONS)).to_numpy(zero_copy_only=False)
        queries, doc_lists = batch.column("text").to_pylist(), batch.column("doc_text").to_pylist()
        # One engine call for the whole batch: every pair of every active query, flattened.
        owners = [r for r in range(batch.num_rows) if active[r] for _ in (doc_lists[r] or [])]
        flat_docs = [d if d is not None else "" for r in range(batch.num_rows) if active[r]
                     for d in (doc_lists[r] or [])]
        scores, encoded = self.score_pairs([queries[r] for r in owners], flat_docs)
        cols: dict[str, list] = {k: [None] * batch.num_rows for k in
                                 ("rerank_score", "rank", "pair_tokens", "truncated", "pair_reason")}
        n_tokens = [0] * batch.num_rows
        at = 0
        for r in range(batch.num_rows):
            if not active[r]:
                continue
            k = len(doc_lists[r] or [])
            s, enc = scores[at : at + k], encoded[at : at + k]
            at += k
            cols["rerank_score"][r] = [None if np.isnan(x) else float(x) for x in s]
            cols["rank"][r] = [None if x < 0 else int(x) for x in ranks_of(s)]
            cols["pair_tokens"][r] = [len(e[0]) if e[0] else 0 for e in enc]
            cols["truncated"][r] = [e[1] for e in enc]
            cols["pair_reason"][r] = [e[2] for e in enc]
            n_tokens[r] = sum(cols["pair_tokens"][r])
        types = {"rerank_score": pa.float32(), "rank": pa.int32(), "pair_tokens": pa.int32(),
                 "truncated": pa.bool_(), "pair_reason": pa.string()}
        for name, typ in types.items():
            batch = batch.append_column(name, pa.array(cols[name], pa.list_(typ)))
        self.clock.batch_done(len(owners))
        return batch.append_column("n_tokens", pa.array(n_tokens, pa.int64()))
