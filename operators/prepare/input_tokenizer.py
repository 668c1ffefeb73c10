"""Tokenise the rows to embed in Ray tasks, ahead of the engine actors.

Column contract:
- needs `text`, `action`.
- adds `token_ids` (list<int32>: the engine's exact input, query instruction and end token
  included, cut to `max_tokens`; null where the row is not embedded, or where this worker
  cannot load a fast tokenizer for the model: the Embedder tokenises such rows itself) and
  `truncated` (bool: the input was cut).

Why a stage of its own: an engine actor that tokenises its batch leaves its engine idle
meanwhile (on a GPU node, the GPU waits). Here
tokenising runs in the read-side tasks, on the node's other cores, and mostly while the
engine is still starting, so the actor only embeds (what ray.data.llm's tokenize stage does).

The tokenizer is the model folder's `tokenizer.json` (a hub model's, read once on the driver from
its snapshot by `shipped_tokenizer` and shipped through Ray's object store), loaded with the Rust `tokenizers`
library, not transformers' AutoTokenizer (seconds to import in a fresh task worker: it
imports torch). Both give the same ids on the models the tests build (tests/test_input_tokenizer.py),
and the Embedder checks the first ids it receives against its own AutoTokenizer: where they
differ it says so and tokenises every row itself, so a tokenizer.json that transformers
would have configured differently costs speed, never vectors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from operators.contract import require_columns
from operators.infer.embedder import EmbedderSpec, apply_input_rules, clip_texts, embed_mask, prompts_at
from operators.infer.model_spec import END_TOKEN, ModelSpec

REQUIRED = ("text", "action")
TOKEN_IDS = pa.list_(pa.int32())


class FastTokenizer:
    """The job's input rules (operators/infer/embedder.py `Tokenizer`) on a bare `tokenizers.Tokenizer`."""

    def __init__(self, tok, max_tokens: int, end_id: int | None):
        self._tok = tok
        self._max_tokens = max_tokens
        self._end_id = end_id

    @classmethod
    def load(cls, model: ModelSpec, max_tokens: int, trust_remote_code: bool = False,
             text: str | None = None) -> FastTokenizer | None:
        """`text`: a hub model's tokenizer.json as the driver read it; None where there is no `tokenizer.json`
        (a hub model whose snapshot the driver could not read, slow-only or remote-code tokenizers)."""
        file = Path(model.path) / "tokenizer.json"
        if trust_remote_code or (text is None and not file.is_file()):
            return None
        from tokenizers import Tokenizer as RustTokenizer

        tok = RustTokenizer.from_str(text) if text is not None else RustTokenizer.from_file(str(file))
        # As transformers does on load: the file's padding / truncation settings are for training,
        # and split_special_tokens=True (a document that contains "<|endoftext|>" is plain text).
        tok.no_padding()
        tok.no_truncation()
        tok.encode_special_tokens = True
        end_id = None
        if model.appends_end_token:
            end_id = tok.token_to_id(END_TOKEN)
            if end_id is None:  # AutoTokenizer would fall back to eos: the actor's tokenizer decides
                return None
        return cls(tok, max_tokens, end_id)

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text and whether it was cut, exactly as `Tokenizer.encode`."""
        clipped = clip_texts(texts, self._max_tokens)
        # One text at a time, on this task's one core: `encode_batch` would take every core of the
        # node (Rust threads), the engine's cores included.
        special = self._end_id is None
        raw = [self._tok.encode(t, add_special_tokens=special).ids for t in clipped]
        return apply_input_rules(raw, texts, clipped, self._max_tokens, self._end_id)


@lru_cache(maxsize=4)
def fast_tokenizer(model: ModelSpec, max_tokens: int, trust_remote_code: bool,
                   text: str | None = None) -> FastTokenizer | None:
    """One tokenizer per task worker process and model (workers are reused across tasks)."""
    return FastTokenizer.load(model, max_tokens, trust_remote_code, text)


def shipped_tokenizer(model: ModelSpec, trust_remote_code: bool = False) -> str | None:
    """A hub model's tokenizer.json, read on the driver from its snapshot (the HF cache, else the hub), for the
    tasks, whose nodes may have neither; None for a local folder (read where it is) or none to be had."""
    if trust_remote_code or Path(model.path).is_dir():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model.path, "tokenizer.json")).read_text()
    except Exception:  # noqa: BLE001 - offline and not cached, or no such file: the engine actors tokenise
        return None


def token_ids_column(present: np.ndarray, ids: list[list[int]]) -> pa.Array:
    """list<int32> holding `ids`, in order, where `present` is True and null elsewhere (no per-row arrays built)."""
    lengths = np.zeros(len(present), dtype=np.int32)
    lengths[present] = [len(x) for x in ids]
    offsets = np.zeros(len(present) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=TOKEN_IDS, mask=pa.array(~present))


class InputTokenizer:
    """Ray Data callable (plain tasks): the Embedder's inputs, tokenised. `spec` is the Embedder's EmbedderSpec;
    `tokenizer`: a hub model's tokenizer.json (`shipped_tokenizer`), as text or a Ray object reference to it."""

    def __init__(self, spec: EmbedderSpec, tokenizer: Any = None):
        self.spec = spec
        self._tokenizer = tokenizer

    def _text(self) -> str | None:
        if self._tokenizer is None or isinstance(self._tokenizer, str):
            return self._tokenizer
        import ray

        self._tokenizer = ray.get(self._tokenizer)  # once per worker process
        return self._tokenizer

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "InputTokenizer")
        spec = self.spec
        n = batch.num_rows
        ok = embed_mask(batch)
        rows = np.flatnonzero(ok)
        tok = (fast_tokenizer(spec.model, spec.max_tokens, spec.engine.trust_remote_code, self._text())
               if len(rows) else None)
        cut = np.zeros(n, dtype=bool)
        if tok is None:
            ids_col = pa.nulls(n, TOKEN_IDS)
        else:
            ids, truncated = tok.encode(prompts_at(batch, rows, spec))
            ids_col = token_ids_column(ok, ids)
            cut[rows] = truncated
        return batch.append_column("token_ids", ids_col).append_column("truncated", pa.array(cut))
