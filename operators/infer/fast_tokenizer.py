"""The job's input rules on a bare Rust `tokenizers.Tokenizer` read from the model's `tokenizer.json`.

What the tokenizer stage (operators/prepare/input_tokenizer.py) and a simulated engine's actor tokenise
with: transformers' AutoTokenizer reads the model's config to pick its class, which imports torch
(seconds of CPU in a fresh Ray worker). The rules are the ones the Embedder's transformers `Tokenizer`
applies (operators/infer/embedder.py): both give the same ids on the models the tests build
(tests/test_input_tokenizer.py), and a real engine's actor checks the first ids it receives.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from operators.infer.model_spec import END_TOKEN, ModelSpec
from operators.infer.prompts import apply_input_rules, clip_texts


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
        # One text at a time, on the caller's one core: `encode_batch` would take every core of the
        # node (Rust threads), the engines' cores included.
        special = self._end_id is None
        raw = [self._tok.encode(t, add_special_tokens=special).ids for t in clipped]
        return apply_input_rules(raw, texts, clipped, self._max_tokens, self._end_id)


@lru_cache(maxsize=4)
def fast_tokenizer(model: ModelSpec, max_tokens: int, trust_remote_code: bool,
                   text: str | None = None) -> FastTokenizer | None:
    """One tokenizer per process and model (task workers are reused across tasks)."""
    return FastTokenizer.load(model, max_tokens, trust_remote_code, text)
