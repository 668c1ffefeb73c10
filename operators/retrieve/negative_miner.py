"""Hard-negative selection: which retrieved candidates may serve as negatives for a (query, positive) pair.

The rules are those of sentence-transformers' `mine_hard_negatives`, as pure functions:
candidates are ranked by score (embedding cosine, or the reranker's P(yes) when
it rescored them), the positive itself is never a candidate, the `range_min` best
are skipped (likely unlabelled positives), at most `range_max` are considered,
and a candidate is dropped when its score is above `max_score`, or closer to
the positive's score than `absolute_margin` (neg > pos - m) or `relative_margin`
(neg > pos * (1 - m)). Of what is left, `num_negatives` are kept: the best
(`top`) or a seeded random choice (`random`).

`NegativeMiner` column contract:
- needs `text` (the query), `positive` (the positive's text), `source_shard`, `source_row`,
  `doc_id`, `doc_text`, `retrieval_score` (candidates, best first), `document_score` (the
  positive's embedding score); uses `rerank_score` (list: the positive first, then each
  candidate) when the reranker rescored them.
- adds `negatives` (list of string), `negative_scores` (list of float32), `positive_score`
  (float32, in the scorer's scale) and `mine_reason` (null, or why the row has no negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from operators.contract import require_columns

REQUIRED = ("text", "positive", "source_shard", "source_row", "doc_id", "doc_text", "retrieval_score",
            "document_score")


@dataclass(frozen=True)
class MiningRules:
    range_min: int = 0
    range_max: int = 100
    max_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    num_negatives: int = 3
    sampling: str = "top"  # or "random"
    seed: int = 12


def select_negatives(positive_score: float, positive_text: str, candidates: list[tuple[str, str, float]],
                     rules: MiningRules, rng: np.random.Generator | None = None) -> list[tuple[str, str, float]]:
    """(doc_id, text, score) negatives for one pair; `candidates` in any order."""
    ranked = sorted(candidates, key=lambda c: -c[2])[: rules.range_max]
    positive = positive_text.strip()
    ranked = [c for c in ranked if c[1] is not None and c[1].strip() != positive]
    kept = []
    for doc_id, text, score in ranked[rules.range_min:]:
        if rules.max_score is not None and score > rules.max_score:
            continue
        if rules.absolute_margin is not None and score > positive_score - rules.absolute_margin:
            continue
        if rules.relative_margin is not None and score > positive_score * (1 - rules.relative_margin):
            continue
        kept.append((doc_id, text, score))
    if rules.sampling == "random" and len(kept) > rules.num_negatives:
        rng = rng or np.random.default_rng(rules.seed)
        picked = sorted(rng.choice(len(kept), size=rules.num_negatives, replace=False).tolist())
        return [kept[i] for i in picked]
    return kept[: rules.num_negatives]


def row_rng(seed: int, shard: int, row: int) -> np.random.Generator:
    """A generator per source row: the same negatives whatever the batching or the worker."""
    return np.random.default_rng([seed, shard, row])


class NegativeMiner:
    def __init__(self, rules: MiningRules, shard_index: dict[str, int]):
        self.rules = rules
        self.shard_index = shard_index

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, REQUIRED, "NegativeMiner")
        cols = {c: batch.column(c).to_pylist() for c in REQUIRED}
        reranked = batch.column("rerank_score").to_pylist() if "rerank_score" in batch.column_names else None
        negatives, scores, positive_scores, reasons = [], [], [], []
        for i in range(batch.num_rows):
            ids, texts = cols["doc_id"][i], cols["doc_text"][i]
            if ids is None or cols["document_score"][i] is None:  # not embedded: a bad row
                negatives.append(None)
                scores.append(None)
                positive_scores.append(None)
                reasons.append(None)
                continue
            if reranked is not None and reranked[i] is not None:
                pos, cand_scores = reranked[i][0], reranked[i][1:]
            else:
                pos, cand_scores = cols["document_score"][i], cols["retrieval_score"][i]
            candidates = [(d, t, s) for d, t, s in zip(ids, texts, cand_scores, strict=True) if s is not None]
            rng = row_rng(self.rules.seed, self.shard_index[cols["source_shard"][i]], cols["source_row"][i])
            chosen = select_negatives(pos, cols["positive"][i], candidates, self.rules, rng)
            negatives.append([t for _, t, _ in chosen])
            scores.append([s for _, _, s in chosen])
            positive_scores.append(pos)
            reasons.append(None if chosen else "no_negative_left")
        return (
            batch.append_column("negatives", pa.array(negatives, pa.list_(pa.string())))
            .append_column("negative_scores", pa.array(scores, pa.list_(pa.float32())))
            .append_column("positive_score", pa.array(positive_scores, pa.float32()))
            .append_column("mine_reason", pa.array(reasons, pa.string()))
        )
