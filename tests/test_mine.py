"""`batch-embed mine`: hard negatives from real text with the offline MiniLM, checked against every rule."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from jobs.core.config import ConfigError, parse_config
from jobs.mine.config import MineJobConfig
from operators.retrieve.negative_miner import MiningRules, row_rng, select_negatives
from tests.conftest import job_config, run_job, write_shards

TOPICS = {
    "python": ["Python lists are mutable sequences that can hold items of any type.",
               "A Python dictionary maps hashable keys to values.",
               "List comprehensions build Python lists from an iterable in one expression.",
               "Python functions are defined with the def keyword.",
               "The Python interpreter runs source code line by line."],
    "cooking": ["Bread dough rises because yeast produces carbon dioxide.",
                "Simmer the tomato sauce slowly for an hour to deepen its flavour.",
                "Pasta should be cooked in plenty of salted boiling water.",
                "Roasting vegetables at high heat caramelises their sugars.",
                "A sharp knife makes chopping onions safer and faster."],
    "space": ["The Moon orbits the Earth roughly every twenty-seven days.",
              "Mars is called the red planet because of iron oxide on its surface.",
              "Jupiter is the largest planet in the solar system.",
              "A light year is the distance light travels in one year.",
              "Astronauts on the space station see sixteen sunrises a day."],
    "football": ["A football match lasts ninety minutes plus stoppage time.",
                 "The goalkeeper is the only player allowed to handle the ball.",
                 "A penalty kick is taken from eleven metres.",
                 "The offside rule stops attackers waiting behind the defence.",
                 "The World Cup is held every four years."],
    "health": ["Regular exercise strengthens the heart and lungs.",
               "Drinking enough water keeps the body hydrated.",
               "Sleep helps the brain consolidate memories.",
               "Vegetables and fruit provide vitamins and fibre.",
               "Washing hands stops many infections from spreading."],
}
PAIRS = [
    ("how do I store key value pairs in python", TOPICS["python"][1]),
    ("why does bread rise", TOPICS["cooking"][0]),
    ("what is the biggest planet", TOPICS["space"][2]),
    ("how long is a football game", TOPICS["football"][0]),
    ("why is sleep important", TOPICS["health"][2]),
    ("how should I cook pasta", TOPICS["cooking"][2]),
    ("", TOPICS["space"][0]),  # a bad row: skipped, named in the summary
]


def test_rules_on_scores():
    cands = [(f"d{i}", f"text {i}", s) for i, s in enumerate([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])]
    cands.append(("pos", "the positive", 0.99))
    rules = MiningRules(range_min=1, range_max=7, max_score=0.85, absolute_margin=0.05, num_negatives=2)
    got = select_negatives(0.8, "the positive ", cands, rules)
    # ranked: pos(dropped), .95 (range_min), .9 > max_score, .8 and .7 > 0.8-0.05? .8 yes dropped, .7 kept
    assert [c[0] for c in got] == ["d3", "d4"]
    rel = select_negatives(0.8, "x", cands, MiningRules(range_max=8, relative_margin=0.25, num_negatives=10))
    assert all(s <= 0.8 * 0.75 for _, _, s in rel) and [c[0] for c in rel] == ["d4", "d5", "d6"]
    # range_max counts before the positive is removed, as the table returned them
    assert [c[0] for c in select_negatives(1.0, "x", cands, MiningRules(range_max=2, num_negatives=5))] == ["pos", "d0"]
    rand = MiningRules(range_max=8, num_negatives=3, sampling="random")
    a = select_negatives(1.0, "x", cands, rand, row_rng(1, 0, 5))
    assert a == select_negatives(1.0, "x", cands, rand, row_rng(1, 0, 5)) and len(a) == 3


def test_config_checks():
    base = {"pairs": {"uri": "p"}, "candidates": {"uri": "db", "table": "t"}, "output": {"path": "o.jsonl"}}
    assert parse_config(base, MineJobConfig).mining.num_negatives == 3
    with pytest.raises(ConfigError, match="mining.range_min: 5 leaves nothing of range_max=5"):
        parse_config({**base, "mining": {"range_min": 5, "range_max": 5}}, MineJobConfig)
    with pytest.raises(ConfigError, match="reranker: mining.scorer: reranker needs a reranker section"):
        parse_config({**base, "mining": {"scorer": "reranker"}}, MineJobConfig)
    with pytest.raises(ConfigError, match="mining.relative_margin"):
        parse_config({**base, "mining": {"relative_margin": 1.5}}, MineJobConfig)


@pytest.mark.engine
def test_mined_negatives_respect_every_rule(tmp_path, minilm_path, ray_session):
    from sentence_transformers import SentenceTransformer

    from jobs.mine.job import run

    docs = [t for texts in TOPICS.values() for t in texts]
    corpus = write_shards(tmp_path / "corpus", [pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs})])
    db = tmp_path / "db"
    run_job(job_config(corpus, db, minilm_path, source={"columns": ["text"]}, model={"max_tokens": 128}))
    pairs = write_shards(tmp_path / "pairs", [pa.table({"question": [q for q, _ in PAIRS],
                                                        "answer": [a for _, a in PAIRS]})])
    out = tmp_path / "out" / "negatives.jsonl"
    rules = {"range_min": 1, "range_max": 15, "max_score": 0.6, "absolute_margin": 0.05, "num_negatives": 3}
    raw = {
        "pairs": {"uri": str(pairs), "query_column": "question", "positive_column": "answer"},
        "candidates": {"uri": str(db), "table": "docs"},
        "mining": rules,
        "engine": {"batch_tokens": 2048},
        "output": {"path": str(out)},
        "run": {"progress": False},
    }
    summary = run(parse_config(raw, MineJobConfig))

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.pairs_read == len(PAIRS) and summary.pairs_written == len(lines) == len(PAIRS) - 1
    assert summary.skipped == {"empty_query": 1} and "row 6" in summary.first_skipped[0]
    (engine,) = summary.time_split["engines"].values()  # one embedder, its batches timed
    assert engine["rows"] == len(PAIRS) - 1 and 0 < engine["busy_share"] <= 1
    assert "engines busy" in summary.render()
    model = SentenceTransformer(str(minilm_path), device="cpu")

    def emb(texts):
        return model.encode(texts, normalize_embeddings=True)

    doc_vecs = emb(docs)
    pos_total = neg_total = n_neg = 0
    for line in lines:
        assert set(line) == {"query", "response", "rejected_response"}
        q = emb([line["query"]])[0]
        pos = float(emb([line["response"]])[0] @ q)
        ranked = sorted(((float(v @ q), d) for v, d in zip(doc_vecs, docs, strict=True) if d != line["response"]),
                        reverse=True)
        assert 1 <= len(line["rejected_response"]) <= 3
        for neg in line["rejected_response"]:
            score = float(emb([neg])[0] @ q)
            assert neg != line["response"] and neg in docs
            assert score <= 0.6 + 1e-3 and score <= pos - 0.05 + 1e-3
            assert neg != ranked[0][1] or abs(ranked[0][0] - ranked[1][0]) < 1e-3  # range_min skips the best
            neg_total += score
            n_neg += 1
        pos_total += pos
    assert summary.mean_positive_score == pytest.approx(pos_total / len(lines), abs=2e-3)
    assert summary.mean_negative_score == pytest.approx(neg_total / n_neg, abs=2e-3)
    assert summary.mean_positive_score > summary.mean_negative_score


@pytest.mark.engine
def test_reranker_scores_the_positive_and_the_candidates(tmp_path, minilm_path, tiny_qwen3, ray_session):
    from jobs.mine.job import run
    from tests.reference import qwen3_rerank_reference

    docs = [t for texts in TOPICS.values() for t in texts]
    corpus = write_shards(tmp_path / "corpus", [pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs})])
    db = tmp_path / "db"
    run_job(job_config(corpus, db, minilm_path, source={"columns": ["text"]}, model={"max_tokens": 128}))
    pairs = write_shards(tmp_path / "pairs", [pa.table({"query": [q for q, _ in PAIRS[:4]],
                                                        "positive": [a for _, a in PAIRS[:4]]})])
    out = tmp_path / "negatives.jsonl"
    raw = {
        "pairs": {"uri": str(pairs)},
        "candidates": {"uri": str(db), "table": "docs"},
        "mining": {"range_max": 8, "relative_margin": 0.02, "num_negatives": 2, "scorer": "reranker"},
        "reranker": {"name": str(tiny_qwen3), "max_tokens": 160, "dtype": "float32"},
        "engine": {"batch_tokens": 2048, "cpus_per_actor": 0.5},
        "output": {"path": str(out)},
        "run": {"progress": False},
    }
    summary = run(parse_config(raw, MineJobConfig))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.scorer == "reranker" and len(lines) + sum(summary.skipped.values()) == 4
    for line in lines:
        pos, *negs = qwen3_rerank_reference(tiny_qwen3, [(line["query"], t) for t in
                                                          [line["response"], *line["rejected_response"]]],
                                            max_tokens=160)
        assert all(n <= pos * 0.98 + 1e-3 for n in negs), "a negative is within the relative margin"
