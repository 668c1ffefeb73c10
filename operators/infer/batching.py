"""Pure functions that cut a batch of rows into engine calls by token budget (no Ray, no vLLM)."""

from __future__ import annotations

from collections.abc import Sequence


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Every row position, longest row first (ties keep their order)."""
    return sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)


def group_by_token_budget(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Split row positions into groups, longest rows first, each group's rows x its longest row <= `budget`.

    The budget counts tokens as a padded kernel computes them (every row as long as the
    group's longest), so a group of similar lengths takes many rows and one of long rows
    few: calls of about the same cost whatever the lengths, and little padding where an
    engine pads (Hugging Face models, GPU kernels with fixed shapes). vLLM does not pad,
    and there the grouping costs nothing (`batch-embed bench`'s batching comparison). A
    single row longer than the budget gets a group of its own rather than being dropped.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in longest_first(lengths):
        if current and (len(current) + 1) * longest > budget:
            groups.append(current)
            current = []
        if not current:
            longest = lengths[i]  # sorted: a group's first row is its longest
        current.append(i)
    if current:
        groups.append(current)
    return groups
