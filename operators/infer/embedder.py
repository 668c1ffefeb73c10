"""The embedding operator: one vLLM engine per Ray actor, batches cut by token budget.

Column contract:
- needs `id`, `text`, `reject_reason`, `action`.
- embeds the rows whose `action` is `new` or `changed` (never rejected or unchanged ones).
- adds `vector` (fixed-size list of `dimensions` float32; null where not embedded),
  `n_tokens` (int32, tokens the model saw, end token included; 0 where not embedded)
  and `truncated` (bool, input was cut to `max_tokens`).
- optionally takes `token_ids` and `truncated` from operators/prepare/input_tokenizer.py (rows it left
  null are tokenised here; the first ids are checked against this actor's own tokenizer) and
  drops `token_ids` from its output.
- with `spec.document_column` set (hard-negative mining: query and positive in one engine),
  also embeds that column as documents (no instruction) and adds `document_score` (float32,
  cosine of the row's two vectors; null where not embedded); its tokens count in `n_tokens`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import faults
from operators.contract import require_columns
from operators.infer.batching import group_by_token_budget
from operators.infer.engine import EngineSpec, apply_node_threads, make_engine
from operators.infer.engine_clock import EngineClock
from operators.infer.fast_tokenizer import FastTokenizer, fast_tokenizer
from operators.infer.matryoshka import mrl_truncate
from operators.infer.model_spec import END_TOKEN, ModelSpec
from operators.infer.prompts import apply_input_rules, clip_texts, format_input

log = logging.getLogger("batch_embed")

REQUIRED = ("id", "text", "reject_reason", "action")
EMBED_ACTIONS = ("new", "changed")


@dataclass(frozen=True)
class EmbedderSpec:
    model: ModelSpec
    engine: EngineSpec
    input_type: str
    instruction: str
    max_tokens: int
    dimensions: int  # the stored vectors' size: model.dimensions, or the model's own size
    batch_tokens: int
    document_column: str | None = None  # also embed this column as documents, see the module docstring
    ledger: Any = None  # the run's TimeLedger actor (operators/infer/engine_clock.py); None: not timed


def embed_mask(batch: pa.Table) -> np.ndarray:
    """True for the rows whose `action` asks for a vector."""
    return pc.is_in(batch.column("action"), pa.array(EMBED_ACTIONS)).to_numpy(zero_copy_only=False)


def prompts_at(batch: pa.Table, rows: np.ndarray, spec: EmbedderSpec) -> list[str]:
    """The model inputs (query instruction applied) of the rows at `rows`."""
    texts = batch.column("text").take(pa.array(rows, pa.int64())).to_pylist()
    return [format_input(t, spec.input_type, spec.instruction) for t in texts]


class Tokenizer:
    """The model's HF tokenizer applying the job's input rules (the reference for prepare/input_tokenizer.py)."""

    def __init__(self, model: ModelSpec, max_tokens: int, trust_remote_code: bool = False):
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        self._max_tokens = max_tokens
        self._end_id: int | None = None
        if model.appends_end_token:
            # Qwen3-Embedding's tokenizer names <|im_end|> as eos: look the end token up by name.
            end = self._tok.convert_tokens_to_ids(END_TOKEN)
            if end is None or end == self._tok.unk_token_id:
                end = self._tok.eos_token_id
            if end is None:
                raise ValueError(f"model.name: {model.name} pools the last token but its tokenizer has no end token")
            self._end_id = int(end)

    @property
    def end_id(self) -> int | None:
        return self._end_id

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text, cut to `max_tokens`; special-token text is split as plain text."""
        if not texts:  # HF tokenizers fail on an empty batch (all rows unchanged or rejected)
            return [], []
        clipped = clip_texts(texts, self._max_tokens)
        enc = self._tok(
            clipped,
            add_special_tokens=self._end_id is None,
            split_special_tokens=True,
            return_attention_mask=False,
        )["input_ids"]
        return apply_input_rules(enc, texts, clipped, self._max_tokens, self._end_id)


def actor_tokenizer(spec: EmbedderSpec) -> Tokenizer | FastTokenizer:
    """The tokenizer of an engine actor: for the rows the tokenizer stage left, and the check of its ids.

    A simulated engine tokenises with the stage's own Rust tokenizer where the model folder has one:
    transformers' AutoTokenizer imports torch, 10-20 s of CPU per actor that only a real engine needs
    (vLLM imports torch anyway) and that would land on the CPUs a dry run measures. Its start-up time
    is `engine.simulated.startup_seconds`.
    """
    eng = spec.engine
    if eng.backend == "simulated":
        fast = fast_tokenizer(spec.model, spec.max_tokens, eng.trust_remote_code)
        if fast is not None:
            return fast
    return Tokenizer(spec.model, spec.max_tokens, eng.trust_remote_code)


class Embedder:
    """Ray Data callable class; heavy set-up (tokenizer, vLLM engine) happens once per actor."""

    # Staged ids (operators/prepare/input_tokenizer.py) checked against this actor's own tokenizer, once.
    CHECK_ROWS = 16

    def __init__(self, spec: EmbedderSpec):
        apply_node_threads()  # first: before anything loads torch
        self.clock = EngineClock(spec.ledger)
        self.spec = spec
        self.tokenizer = actor_tokenizer(spec)
        self.engine = self.clock.timed(make_engine(spec.engine, spec.model.hidden_size))
        self.clock.ready()
        # Staged ids are checked once against transformers' tokenizer; the stage's own needs no check.
        self._staged_ok: bool | None = True if isinstance(self.tokenizer, FastTokenizer) else None

    def _embed(self, prompts: list[str]) -> tuple[np.ndarray, list[int], list[bool]]:
        """(len(prompts), dimensions) MRL vectors, token counts and cut flags."""
        return self._embed_ids(*self.tokenizer.encode(prompts))

    def _embed_ids(self, token_ids: list[list[int]], truncated: list[bool]) -> tuple[np.ndarray, list[int], list[bool]]:
        """`_embed` of inputs already tokenised."""
        spec = self.spec
        lengths = [len(ids) for ids in token_ids]
        full: np.ndarray | None = None
        for group in group_by_token_budget(lengths, spec.batch_tokens):
            out = self.engine.embed([token_ids[i] for i in group])
            if full is None:
                full = np.zeros((len(token_ids), out.shape[1]), dtype=np.float32)
            full[group] = out
        if full is None:
            return np.zeros((0, spec.dimensions), dtype=np.float32), lengths, truncated
        self._check_dimensions(full.shape[1])
        return mrl_truncate(full, spec.dimensions), lengths, truncated

    def _staged(self, batch: pa.Table, rows: np.ndarray) -> tuple[list[list[int]], list[bool]] | None:
        """The rows' ids from the tokenizer stage (rows it left null tokenised here); None: tokenise them all here."""
        if "token_ids" not in batch.column_names or self._staged_ok is False or not len(rows):
            return None
        taken = pa.array(rows)
        ids = batch.column("token_ids").take(taken).to_pylist()
        cut = batch.column("truncated").take(taken).to_pylist()
        missing = [i for i, x in enumerate(ids) if x is None]
        if len(missing) == len(ids):
            return None
        if self._staged_ok is None:
            present = [i for i, x in enumerate(ids) if x is not None][: self.CHECK_ROWS]
            own, own_cut = self.tokenizer.encode(prompts_at(batch, rows[present], self.spec))
            self._staged_ok = own == [ids[i] for i in present] and own_cut == [cut[i] for i in present]
            if not self._staged_ok:
                log.warning("model.name: %s: the tokenizer stage's ids differ from transformers' tokenizer; "
                            "this actor tokenises every row itself", self.spec.model.name)
                return None
        if missing:
            own, own_cut = self.tokenizer.encode(prompts_at(batch, rows[missing], self.spec))
            for i, x, c in zip(missing, own, own_cut, strict=True):
                ids[i], cut[i] = x, c
        return ids, cut

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED + ((self.spec.document_column,) if self.spec.document_column else ()),
                        "Embedder")
        faults.point("embed_batch")
        spec = self.spec
        n = batch.num_rows
        ok = embed_mask(batch)
        rows = np.flatnonzero(ok)
        staged = self._staged(batch, rows)
        if staged is None:
            embedded, lengths, truncated = self._embed(prompts_at(batch, rows, spec))
        else:
            embedded, lengths, truncated = self._embed_ids(*staged)
        vectors = np.zeros((n, spec.dimensions), dtype=np.float32)
        vectors[rows] = embedded

        n_tokens = np.zeros(n, dtype=np.int32)
        n_tokens[rows] = lengths
        cut = np.zeros(n, dtype=bool)
        cut[rows] = truncated

        mask = pa.array(~ok)
        vector_col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), spec.dimensions, mask=mask)
        out = batch.drop_columns([c for c in ("token_ids", "truncated") if c in batch.column_names])
        out = (
            out.append_column("vector", vector_col)
            .append_column("n_tokens", pa.array(n_tokens))
            .append_column("truncated", pa.array(cut))
        )
        if spec.document_column:
            docs = [t or "" for t in batch.column(spec.document_column).take(rows).to_pylist()]
            doc_vectors, doc_lengths, _ = self._embed(docs)
            scores = np.full(n, np.nan, dtype=np.float32)
            scores[rows] = np.sum(embedded * doc_vectors, axis=1)
            n_tokens[rows] += np.asarray(doc_lengths, dtype=np.int32)
            out = out.set_column(out.schema.get_field_index("n_tokens"), "n_tokens", pa.array(n_tokens))
            out = out.append_column("document_score", pa.array(scores, mask=np.isnan(scores)))
        self.clock.batch_done(len(rows))
        return out

    def _check_dimensions(self, produced: int) -> None:
        """The engine's vector size must hold what the driver planned the table for."""
        dims, own = self.spec.dimensions, self.spec.model.hidden_size
        if dims > produced:
            raise ValueError(f"model.dimensions: {dims} is larger than the model's {produced} dimensions")
        if dims == own and produced != own:  # planned at the model's own size, which its config misstates
            raise ValueError(
                f"model.name: the engine produced {produced}-dimensional vectors, the model config says "
                f"{own}; set model.dimensions explicitly"
            )
