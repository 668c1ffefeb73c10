"""Small real-text corpora for the engine tests."""

from __future__ import annotations

SENTENCES = [
    "What is the capital of China?",
    "The capital of China is Beijing.",
    "Explain gravity",
    "Gravity is a force that attracts two bodies towards each other.",
    "The quick brown fox jumps over the lazy dog.",
    "A search engine ranks documents by their relevance to a query.",
    "Ray Data streams Parquet shards through actors; LanceDB stores the vectors.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The mitochondria is the powerhouse of the cell.",
    "Binary search finds an item in a sorted list in logarithmic time.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Shakespeare wrote Hamlet, Macbeth and King Lear.",
]


def long_text(i: int, words: int = 400) -> str:
    """A text far longer than the small `max_tokens` the tests use."""
    base = SENTENCES[i % len(SENTENCES)].split()
    return " ".join(base[j % len(base)] for j in range(words)) + f" ending number {i}"


def documents(n: int) -> list[tuple[str, str]]:
    """(id, text) rows: real sentences, every fifth one long."""
    rows = []
    for i in range(n):
        text = long_text(i) if i % 5 == 4 else SENTENCES[i % len(SENTENCES)] + f" (note {i})"
        rows.append((f"doc-{i:04d}", text))
    return rows
