"""Retrieval metrics by name, computed with ir-measures (trec_eval's definitions through pytrec_eval).

Names are lowercase `<metric>@<cutoff>`: `ndcg@10`, `recall@100`, `mrr@10`, `map@100`,
`precision@5`. A document counts as relevant when its judged relevance is >= 1; nDCG
uses the graded relevance as gain. The mean is over every judged query (a query with at
least one relevant document): a query that got no ranking (its text was empty) scores 0,
as it would for a user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

# Our names -> ir-measures' names (nDCG@k, R@k = recall, RR@k = reciprocal rank cut at k).
_MEASURES = {"ndcg": "nDCG", "recall": "R", "mrr": "RR", "map": "AP", "precision": "P"}
_NAME = re.compile(r"^(?P<metric>[a-z]+)@(?P<cutoff>[1-9][0-9]*)$")
DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def check_metric(name: str) -> str:
    """The name, validated: `ValueError` says what is accepted."""
    m = _NAME.match(name)
    if not m or m["metric"] not in _MEASURES:
        raise ValueError(f"{name!r} is not a metric this job computes; use <metric>@<cutoff> with metric one of "
                         f"{sorted(_MEASURES)} (e.g. ndcg@10, recall@100)")
    return name


def cutoff(name: str) -> int:
    return int(check_metric(name).split("@")[1])


def measure(name: str):
    import ir_measures

    metric, k = check_metric(name).split("@")
    return ir_measures.parse_measure(f"{_MEASURES[metric]}@{k}")


Ranking = Sequence[tuple[str, float]]  # (doc_id, score), best first


def evaluate(names: Sequence[str], qrels: Mapping[str, Mapping[str, int]],
             runs: Mapping[str, Ranking]) -> dict[str, float]:
    """Mean of each metric over the judged queries of `qrels` ({query_id: {doc_id: relevance}}).

    `runs`: {query_id: ranking}. Scores are replaced by rank order (n, n-1, ...), so the
    library's own tie-breaking never reorders what the job ranked.
    """
    import ir_measures

    judged = sorted(judged_queries(qrels))
    if not judged:
        return {n: float("nan") for n in names}
    qrel_rows = [ir_measures.Qrel(q, d, int(r)) for q in judged for d, r in qrels[q].items()]
    run_rows = [ir_measures.ScoredDoc(q, d, float(len(ranking) - i))
                for q in judged for ranking in [runs.get(q) or ()] for i, (d, _) in enumerate(ranking)]
    by_measure = {measure(n): n for n in names}
    totals = dict.fromkeys(names, 0.0)
    for m in ir_measures.iter_calc(list(by_measure), qrel_rows, run_rows):
        totals[by_measure[m.measure]] += m.value
    # Queries with no ranking at all are absent from iter_calc's output: they add 0.
    return {n: totals[n] / len(judged) for n in names}


def judged_queries(qrels: Mapping[str, Mapping[str, int]]) -> set[str]:
    return {q for q, docs in qrels.items() if any(r >= 1 for r in docs.values())}


def depth(names: Iterable[str]) -> int:
    """How many documents a ranking needs for every metric: the largest cutoff."""
    return max(cutoff(n) for n in names)
