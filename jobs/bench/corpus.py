"""The benchmark's corpus: real English text at a realistic spread of lengths, the same for every seed.

Nightly corpora mix titles, paragraphs and whole pages, so batching has to cope
with a few tokens next to several hundred. Each row is made of consecutive
paragraphs of Python's standard-library docstrings (the offline demo's text),
cut to a length drawn from a log-normal spread (median ~60 tokens, a long tail
up to a few hundred), so no download is needed and a run is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jobs.core.batching import CHARS_PER_TOKEN
from jobs.core.stdlib_text import collect

MIN_TOKENS, MAX_TOKENS = 4, 700


def length_targets(rows: int, seed: int) -> np.ndarray:
    """Target lengths in tokens: log-normal, median 60, clipped to [4, 700]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=np.log(60), sigma=1.0, size=rows), MIN_TOKENS, MAX_TOKENS).astype(int)


def _cut_at_word(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[: cut if cut > chars // 2 else chars]


def make_texts(rows: int, seed: int = 0) -> list[str]:
    """`rows` texts of mixed length built from consecutive docstring paragraphs."""
    paragraphs = [p.strip() for _, text, _ in collect(100_000) for p in text.split("\n\n") if len(p.strip()) > 20]
    if not paragraphs:
        raise RuntimeError("no standard-library docstrings found to build the corpus from")
    rng = np.random.default_rng(seed + 1)
    texts = []
    for target in length_targets(rows, seed):
        chars = int(int(target) * CHARS_PER_TOKEN)
        i = int(rng.integers(len(paragraphs)))
        parts, size = [], 0
        while size < chars:
            p = paragraphs[i % len(paragraphs)]
            parts.append(p)
            size += len(p) + 2
            i += 1
        texts.append(_cut_at_word("\n\n".join(parts), chars))
    return texts


def write_bench_corpus(out: Path, texts: list[str], shard_rows: int = 5000) -> list[Path]:
    """Parquet shards of (`id`, `text`) under `out` (old shards removed); returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = len(texts)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    paths = []
    for n, start in enumerate(range(0, rows, shard_rows)):
        part = texts[start : start + shard_rows]
        table = pa.table({"id": [f"doc-{start + i:08d}" for i in range(len(part))], "text": part})
        path = out / f"part-{n:05d}.parquet"
        pq.write_table(table, path, row_group_size=1024)
        paths.append(path)
    return paths
