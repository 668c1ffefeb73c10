"""The bench's batching comparison: the same inputs through one engine, batched several ways, in rotated rounds.

The variants and their arithmetic are pure; `run_batching` runs them on the two engines.

Two engines, because batching pays off where an engine pads:
- the vLLM engine the job and the raw contender run (same settings): every call's inputs go in
  unpadded and vLLM's scheduler re-cuts them into steps of `max_num_batched_tokens`;
- a padded engine, the naive contender's sentence-transformers model (Hugging Face transformers:
  every batch padded to its longest row), what a hand-rolled loop or a padded GPU kernel computes;
  in the vLLM engine's dtype, on the first PADDED_ROWS inputs.

Variants: the job's token budget with length-sorted groups, fixed row counts in source order (32 is
ray.data.llm's and sentence-transformers' default `batch_size`), and, for vLLM, the raw contender's
one length-sorted call. Each round runs every variant once, in an order rotated by one each round so
that no variant always runs first or last; the report keeps every round.

Also, per variant: how many tokens a padded kernel would compute per real token (`padding`), from the
token counts alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobs.bench.contenders import corpus_texts, engine_spec
from operators.infer.batching import group_by_token_budget, longest_first

# What the padded engine embeds: the first rows of the same inputs (the source-order variants
# compute their padding too: ~3x the tokens on the bench's corpus).
PADDED_ROWS = 2000


def fixed_row_groups(n: int, rows: int) -> list[list[int]]:
    """Positions 0..n-1 in source order, `rows` at a time: what a `batch_size` of rows gives."""
    return [list(range(i, min(i + rows, n))) for i in range(0, n, rows)]


def padded_tokens(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> int:
    """Tokens a padded kernel computes: every group padded to its longest row."""
    return sum(len(g) * max(lengths[i] for i in g) for g in groups if g)


def rotated_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """One order per round, rotated by the round's number: over len(names) rounds each variant runs first once."""
    return [list(names[r % len(names):]) + list(names[:r % len(names)]) for r in range(rounds)]


def verdict(candidate: Sequence[float], other: Sequence[float]) -> str:
    """'faster' / 'slower' only where every round of `candidate` beat (or lost to) every round of `other`."""
    if max(candidate) < min(other):
        return "faster"
    if min(candidate) > max(other):
        return "slower"
    return "within noise"


def batching_variants(lengths: Sequence[int], budget: int, fixed_rows: Sequence[int],
                      one_call: bool) -> dict[str, list[list[int]]]:
    """Label -> groups of positions; the first is the job's token budget (the reference of the verdicts)."""
    n = len(lengths)
    variants = {f"token budget {budget}, length-sorted (this job)": group_by_token_budget(lengths, budget)}
    for rows in dict.fromkeys(fixed_rows):
        variants[f"fixed {rows}-row batches, source order"] = fixed_row_groups(n, rows)
    if one_call:
        variants["one call, length-sorted (raw engine)"] = [longest_first(lengths)]
    return variants


def compare(run: Callable[[list[list[int]]], None], lengths: Sequence[int],
            variants: dict[str, list[list[int]]], rounds: int,
            clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Time `run(groups)` for every variant in rotated rounds; seconds per round, median, padding, verdict."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for order in rotated_orders(list(variants), rounds):
        for name in order:
            start = clock()
            run(variants[name])
            seconds[name].append(round(clock() - start, 3))
    tokens = sum(lengths)
    reference = next(iter(variants))
    base = statistics.median(seconds[reference])
    out: dict[str, Any] = {"rows": len(lengths), "tokens": tokens, "rounds": rounds, "reference": reference,
                           "variants": {}}
    for name, groups in variants.items():
        median = statistics.median(seconds[name])
        out["variants"][name] = {
            "seconds": seconds[name], "median_s": round(median, 3), "calls": len(groups),
            "tokens_per_s": round(tokens / median, 1) if median else None,
            "padding": round(padded_tokens(lengths, groups) / tokens, 3) if tokens else None,
            "vs_reference": round(median / base, 3) if base else None,
            "verdict": None if name == reference else verdict(seconds[reference], seconds[name]),
        }
    return out


def run_batching(case: dict[str, Any]) -> dict[str, Any]:
    """The batching comparison: vLLM on a quarter of the corpus, the padded engine
    on its first PADDED_ROWS rows."""
    from operators.infer.embedder import Tokenizer
    from operators.infer.engine import PoolingEngine

    model, spec = engine_spec(case)
    texts = corpus_texts(case["corpus"])
    texts = texts[: max(1, len(texts) // 4)]
    ids, _ = Tokenizer(model, case["max_tokens"]).encode(texts)
    lengths = [len(x) for x in ids]
    rounds, fixed = case["batching_rounds"], case["fixed_rows"]
    engine = PoolingEngine(spec)

    def vllm_run(groups: list[list[int]]) -> None:
        for group in groups:
            engine.embed([ids[i] for i in group])

    vllm_run(fixed_row_groups(min(len(ids), 256), 64))  # untimed: the engine's first calls warm its caches
    result = {"vllm": compare(vllm_run, lengths, batching_variants(lengths, case["batch_tokens"], fixed, True),
                              rounds)}

    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model.path, device="cpu")
    st.max_seq_length = case["max_tokens"]
    st.to(getattr(torch, spec.resolved_dtype))  # the vLLM engine's dtype: the comparison is about shapes
    sample, sample_lengths = texts[:PADDED_ROWS], lengths[:PADDED_ROWS]

    def padded_run(groups: list[list[int]]) -> None:
        for group in groups:  # one call per group, batch_size = the group: one padded forward each
            st.encode([sample[i] for i in group], batch_size=len(group))

    padded_run(fixed_row_groups(min(len(sample), 64), 32))  # untimed warm-up
    result["padded"] = compare(padded_run, sample_lengths,
                               batching_variants(sample_lengths, case["batch_tokens"], fixed, False), rounds)
    return result
