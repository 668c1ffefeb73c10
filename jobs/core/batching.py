"""Ray batch sizes from the engine's token budget: one rule for every job and every engine pool.

`engine.batch_tokens` is the token budget of one engine call, and a Ray batch should carry
about that many tokens: enough to fill the engine, not so many that one actor holds the
work of several calls while others wait. Text is not tokenised on the driver; its length
is estimated from a sample, and the embedder and reranker cut each batch by exact counts.
"""

from __future__ import annotations

from operators.infer.prompts import RERANK_PREFIX, RERANK_SUFFIX

CHARS_PER_TOKEN = 4.0  # a rough English average; only batch sizes depend on it
SPECIAL_TOKENS = 2  # what a tokenizer adds around a text (an end token, or [CLS] ... [SEP])
MAX_ROWS = 8192
# The reranker's chat template around each pair, with ~40 characters of instruction.
RERANK_TEMPLATE_TOKENS = int((len(RERANK_PREFIX) + len(RERANK_SUFFIX) + 40) // CHARS_PER_TOKEN)


def text_tokens(mean_chars: float, max_tokens: int) -> float:
    """Estimated tokens of one model input whose text averages `mean_chars` characters, cut at `max_tokens`."""
    return min(float(max_tokens), mean_chars / CHARS_PER_TOKEN + SPECIAL_TOKENS)


def pair_tokens(query_chars: float, doc_chars: float, max_tokens: int) -> float:
    """Estimated tokens of one reranker input: template, query and document, cut at `max_tokens`."""
    return min(float(max_tokens), RERANK_TEMPLATE_TOKENS + (query_chars + doc_chars) / CHARS_PER_TOKEN)


def rows_per_batch(batch_tokens: int, tokens_per_row: float) -> int:
    """Rows per Ray batch so that one batch carries about `batch_tokens` tokens.

    A row is what the stage receives: one text, a (query, positive) pair to embed, or one
    query with all its candidate pairs; `tokens_per_row` is what the engine computes for it.
    At least one row, at most MAX_ROWS (a batch of tiny rows is still one object in Ray).
    """
    return int(min(MAX_ROWS, max(1, batch_tokens // max(1.0, tokens_per_row))))
