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
library (operators/infer/fast_tokenizer.py), not transformers' AutoTokenizer (seconds to import in a fresh
task worker: it imports torch). Both give the same ids on the models the tests build (tests/test_input_tokenizer.py),
and a real engine's Embedder checks the first ids it receives against its own AutoTokenizer: where they
differ it says so and tokenises every row itself, so a tokenizer.json that transformers
would have configured differently costs speed, never vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from operators.contract import require_columns
from operators.infer.embedder import EmbedderSpec, embed_mask, prompts_at
from operators.infer.fast_tokenizer import fast_tokenizer
from operators.infer.model_spec import ModelSpec

REQUIRED = ("text", "action")
TOKEN_IDS = pa.list_(pa.int32())


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
