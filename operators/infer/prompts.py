"""Pure functions that turn text into the exact model inputs Qwen3 expects.

Qwen3-Embedding takes the hidden state of the *last* token, and that token must
be `<|endoftext|>`: the tokenizer does not always add it, and cutting an
over-long input must not drop it. Queries carry `Instruct: {task}\\nQuery:{text}`;
documents carry nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# No token is longer than this many characters in practice; cutting the text
# first keeps a 50 MB document from being tokenised whole only to be cut.
CHARS_PER_TOKEN_BOUND = 64

# The instruction the Qwen3-Embedding and Qwen3-Reranker model cards use for web-search queries.
DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_query(instruction: str, text: str) -> str:
    """The Qwen3-Embedding query prompt; an empty instruction means the bare text."""
    if not instruction:
        return text
    return f"Instruct: {instruction}\nQuery:{text}"


def format_input(text: str, input_type: str, instruction: str) -> str:
    """Documents go in as they are; queries get the instruction prefix."""
    return format_query(instruction, text) if input_type == "query" else text


def cut_and_end(token_ids: Sequence[int], max_tokens: int, end_id: int) -> tuple[list[int], bool]:
    """Cut content ids to `max_tokens - 1` and append `end_id`.

    `token_ids` must be the ids *without* special tokens. If they already end
    with `end_id` (a text that literally ends in the end token is split as plain
    text upstream, so this only happens with tokenizers that add it), it is not
    doubled. Returns the ids and whether anything was cut.
    """
    if max_tokens < 2:
        raise ValueError("max_tokens must leave room for one content token and the end token")
    ids = list(token_ids)
    if ids and ids[-1] == end_id:
        ids.pop()
    truncated = len(ids) > max_tokens - 1
    return ids[: max_tokens - 1] + [end_id], truncated


def cut_keep_last(token_ids: Sequence[int], max_tokens: int) -> tuple[list[int], bool]:
    """Cut ids that already carry the model's own specials (`[CLS] ... [SEP]`), keeping the last one."""
    ids = list(token_ids)
    if len(ids) <= max_tokens:
        return ids, False
    return ids[: max_tokens - 1] + [ids[-1]], True


def clip_texts(texts: list[str], max_tokens: int) -> list[str]:
    """Texts cut to what `max_tokens` tokens can hold at most (CHARS_PER_TOKEN_BOUND characters a token)."""
    cap = max_tokens * CHARS_PER_TOKEN_BOUND
    return [t[:cap] for t in texts]


def apply_input_rules(encoded: list[list[int]], texts: list[str], clipped: list[str], max_tokens: int,
                      end_id: int | None) -> tuple[list[list[int]], list[bool]]:
    """The job's cut rules on raw tokenizer output: the end token kept last, `truncated` where anything was cut."""
    out, cut = [], []
    for ids, text, short in zip(encoded, texts, clipped, strict=True):
        if end_id is not None:
            ids, truncated = cut_and_end(ids, max_tokens, end_id)
        else:
            ids, truncated = cut_keep_last(ids, max_tokens)
        out.append(ids)
        cut.append(truncated or len(short) < len(text))
    return out, cut


# Qwen3-Reranker, exactly as its model card builds the input: a chat template
# whose system turn asks for "yes"/"no", the pair in the user turn, and an empty
# thinking block; the score is P("yes") at the last position.
DEFAULT_RERANK_INSTRUCTION = DEFAULT_QUERY_INSTRUCTION
RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def rerank_pair_head(instruction: str | None, query: str) -> str:
    """The user turn up to where the document starts."""
    task = DEFAULT_RERANK_INSTRUCTION if instruction is None else instruction
    return f"<Instruct>: {task}\n<Query>: {query}\n<Document>: "


def assemble_rerank_ids(
    prefix: Sequence[int], body: Sequence[int], suffix: Sequence[int], max_tokens: int, head_len: int
) -> tuple[list[int], bool]:
    """prefix + body + suffix in at most `max_tokens`, cutting the end of the body (the document).

    `body` is the whole user turn tokenised at once (as the model card does, so
    the head/document boundary tokenises the same); `head_len` is how much of it
    is instruction and query, which must survive with at least one document token.
    """
    room = max_tokens - len(prefix) - len(suffix)
    if room < head_len + 1:
        raise ValueError(f"instruction and query take {head_len} tokens; with the template that leaves no room "
                         f"for the document within max_tokens={max_tokens}")
    return [*prefix, *body[:room], *suffix], len(body) > room


def yes_probability(no_logit: float, yes_logit: float) -> float:
    """softmax over the (no, yes) logits of the last position, the "yes" share."""
    m = max(no_logit, yes_logit)
    e_no, e_yes = math.exp(no_logit - m), math.exp(yes_logit - m)
    return e_yes / (e_no + e_yes)
