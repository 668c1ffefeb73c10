"""The embedding operator: one vLLM engine per Ray actor, batches cut by token budget.

Column contract:
- needs `id`, `text`, `reject_reason`, `action`.
- embeds the rows whose `action` is `new` or `changed` (never rejected or unchanged ones).
- adds `vector` (fixed-size list of `dimensions` float32; null where not embedded),
  `n_tokens` (int32, tokens the model saw, end token included; 0 where not embedded)
  and `truncated` (bool, input was cut to `max_tokens`).
- with `spec.document_column` set (hard-negative mining: query and positive in one engine),
  also embeds that column as documents (no instruction) and adds `document_score` (float32,
  cosine of the row's two vectors; null where not embedded); its tokens count in `n_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import faults
from operators.contract import require_columns
from operators.engine import EngineSpec, PoolingEngine
from operators.model_spec import END_TOKEN, ModelSpec
from operators.prompts import cut_and_end, cut_keep_last, format_input, group_by_token_budget
from operators.vectors import mrl_truncate

REQUIRED = ("id", "text", "reject_reason", "action")
EMBED_ACTIONS = ("new", "changed")

# No token is longer than this many characters in practice; cutting the text
# first keeps a 50 MB document from being tokenised whole only to be cut.
_CHARS_PER_TOKEN_BOUND = 64


@dataclass(frozen=True)
class EmbedderSpec:
    model: ModelSpec
    engine: EngineSpec
    input_type: str
    instruction: str
    max_tokens: int
    dimensions: int | None
    width: int  # stored vector width: `dimensions`, or the model's hidden size
    batch_tokens: int
    document_column: str | None = None  # also embed this column as documents, see the module docstring


class Tokenizer:
    """The model's HF tokenizer applying the job's input rules (shared with the driver's estimate)."""

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
        cap = self._max_tokens * _CHARS_PER_TOKEN_BOUND
        clipped = [t[:cap] for t in texts]
        enc = self._tok(
            clipped,
            add_special_tokens=self._end_id is None,
            split_special_tokens=True,
            return_attention_mask=False,
        )["input_ids"]
        out, cut = [], []
        for ids, text, short in zip(enc, texts, clipped, strict=True):
            if self._end_id is not None:
                ids, truncated = cut_and_end(ids, self._max_tokens, self._end_id)
            else:
                ids, truncated = cut_keep_last(ids, self._max_tokens)
            out.append(ids)
            cut.append(truncated or len(short) < len(text))
        return out, cut


class Embedder:
    """Ray Data callable class; heavy set-up (tokenizer, vLLM engine) happens once per actor."""

    def __init__(self, spec: EmbedderSpec):
        self.spec = spec
        self.tokenizer = Tokenizer(spec.model, spec.max_tokens, spec.engine.trust_remote_code)
        self.engine = PoolingEngine(spec.engine)

    def _embed(self, prompts: list[str]) -> tuple[np.ndarray, list[int], list[bool]]:
        """(len(prompts), width) MRL vectors, token counts and cut flags."""
        spec = self.spec
        token_ids, truncated = self.tokenizer.encode(prompts)
        lengths = [len(ids) for ids in token_ids]
        full: np.ndarray | None = None
        for group in group_by_token_budget(lengths, spec.batch_tokens):
            out = self.engine.embed([token_ids[i] for i in group])
            if full is None:
                full = np.zeros((len(prompts), out.shape[1]), dtype=np.float32)
            full[group] = out
        if full is None:
            return np.zeros((0, spec.width), dtype=np.float32), lengths, truncated
        self._check_width(full.shape[1])
        return mrl_truncate(full, spec.dimensions), lengths, truncated

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED + ((self.spec.document_column,) if self.spec.document_column else ()),
                        "Embedder")
        faults.point("embed_batch")
        spec = self.spec
        n = batch.num_rows
        ok = pc.is_in(batch.column("action"), pa.array(EMBED_ACTIONS)).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(ok)
        texts = batch.column("text").take(rows).to_pylist()
        embedded, lengths, truncated = self._embed([format_input(t, spec.input_type, spec.instruction) for t in texts])
        width = spec.width
        vectors = np.zeros((n, width), dtype=np.float32)
        vectors[rows] = embedded

        n_tokens = np.zeros(n, dtype=np.int32)
        n_tokens[rows] = lengths
        cut = np.zeros(n, dtype=bool)
        cut[rows] = truncated

        mask = pa.array(~ok)
        vector_col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), width, mask=mask)
        out = (
            batch.append_column("vector", vector_col)
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
        return out

    def _check_width(self, produced: int) -> None:
        """The engine's vector size must match what the driver planned the table for."""
        dims = self.spec.dimensions
        if dims is not None and dims > produced:
            raise ValueError(f"model.dimensions: {dims} is larger than the model's {produced} dimensions")
        if dims is None and produced != self.spec.width:
            raise ValueError(
                f"model.name: the engine produced {produced}-dimensional vectors, the model config says "
                f"{self.spec.width}; set model.dimensions explicitly"
            )
