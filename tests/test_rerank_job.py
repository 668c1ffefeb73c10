"""`batch-embed rerank`: pairs in, (query_id, doc_id, retrieval_score, rerank_score, rank) out.

Scores are checked against the transformers reference of the model card's
formula on the tiny Qwen3; bad input lands in the rejected table or as unscored
pairs, never silently; re-running (`sink.mode: append`, the default) reranks only new queries.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ConfigError, parse_config
from jobs.rerank.config import RerankJobConfig
from tests.conftest import read_table, write_shards
from tests.corpus import SENTENCES, long_text
from tests.reference import qwen3_rerank_reference
from tests.tiny_models import build_lora_adapter

INSTRUCTION = "Judge whether the passage answers the question"
QUERIES = {"q1": "What is the capital of China?", "q2": "Explain gravity", "q3": "who wrote hamlet",
           "q4": "how do plants make energy"}


def pair_rows(qids: list[str]) -> list[tuple[str, str, str, str, float]]:
    rows = []
    for qi, q in enumerate(qids):
        for d in range(3 + qi % 2):
            text = long_text(qi + d, words=200) if (qi, d) == (1, 2) else SENTENCES[(qi * 3 + d) % len(SENTENCES)]
            rows.append((q, QUERIES[q], f"{q}-d{d}", text, 1.0 - d / 10))
    return rows


def table_of(rows) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table({"qid": list(cols[0]), "question": list(cols[1]), "doc_id": list(cols[2]),
                     "doc_text": list(cols[3]), "bm25": list(cols[4])})


def rerank_config(pairs_uri, db, model_path, **sections) -> dict:
    cfg = {
        "pairs": {"uri": str(pairs_uri), "query_id_column": "qid", "query_column": "question",
                  "score_column": "bm25"},
        "model": {"name": str(model_path), "instruction": INSTRUCTION, "max_tokens": 160, "dtype": "float32"},
        "engine": {"batch_tokens": 1024},
        "sink": {"uri": str(db), "table": "scores", "commit_every_rows": 8, "rows_per_fragment": 8},
        "run": {"progress": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def run_rerank(raw: dict):
    from jobs.rerank.job import run

    return run(parse_config(raw, RerankJobConfig))


def test_config_needs_exactly_one_input():
    base = {"sink": {"uri": "db", "table": "t"}}
    with pytest.raises(ConfigError, match="pairs: give either pairs"):
        parse_config(base, RerankJobConfig)
    with pytest.raises(ConfigError, match="candidates: queries need candidates.table"):
        parse_config({**base, "queries": {"uri": "q"}}, RerankJobConfig)
    with pytest.raises(ConfigError, match="candidates: applies to queries"):
        parse_config({**base, "pairs": {"uri": "p"}, "candidates": {"table": "docs"}}, RerankJobConfig)
    cfg = parse_config({**base, "queries": {"uri": "q"}, "candidates": {"table": "docs", "top_k": 5}},
                       RerankJobConfig)
    assert cfg.candidates_uri == "db" and cfg.model.name == "Qwen/Qwen3-Reranker-0.6B"


def test_missing_pair_column_is_named(tmp_path, tiny_qwen3):
    from jobs.rerank.plan import plan_rerank_job

    src = write_shards(tmp_path / "pairs", [table_of(pair_rows(["q1"]))])
    raw = rerank_config(src, tmp_path / "db", tiny_qwen3, pairs={"doc_text_column": "body"})
    with pytest.raises(ConfigError, match="pairs.doc_text_column: column 'body' is missing"):
        plan_rerank_job(parse_config(raw, RerankJobConfig))


@pytest.mark.engine
def test_pairs_are_scored_ranked_and_bad_input_is_kept(tmp_path, tiny_qwen3, ray_session):
    good = pair_rows(["q1", "q2", "q3"])
    good[1] = (*good[1][:3], "   ", good[1][4])  # an empty document: written, unscored
    empty_query = [("q9", "", "q9-d0", "some text", 0.5)]
    again = [r for r in pair_rows(["q1"])][:1]  # q1 again, after other queries: not merged
    src = write_shards(tmp_path / "pairs", [table_of(good[:7]), table_of(good[7:] + empty_query + again)])
    db = tmp_path / "db"
    summary = run_rerank(rerank_config(src, db, tiny_qwen3))

    out = read_table(str(db), "scores").sort_by([("query_id", "ascending"), ("doc_id", "ascending")])
    assert out.num_rows == len(good)
    assert summary.pairs_written == len(good) and summary.queries_reranked == 3 and summary.pairs_unscored == 1
    rows = out.to_pylist()
    by_pair = {(r["query_id"], r["doc_id"]): r for r in rows}
    empty = by_pair[("q1", "q1-d1")]
    assert empty["rerank_score"] is None and empty["rank"] is None and empty["reason"] == "empty_document"
    scored = [r for r in good if r[3].strip()]
    want = qwen3_rerank_reference(tiny_qwen3, [(r[1], r[3]) for r in scored], instruction=INSTRUCTION,
                                  max_tokens=160)
    got = np.array([by_pair[(r[0], r[2])]["rerank_score"] for r in scored], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-3)
    for q in ("q1", "q2", "q3"):
        mine = sorted((r for r in rows if r["query_id"] == q and r["rank"] is not None), key=lambda r: r["rank"])
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1))
        assert [r["rerank_score"] for r in mine] == sorted((r["rerank_score"] for r in mine), reverse=True)
    assert by_pair[("q2", "q2-d2")]["truncated"] and by_pair[("q2", "q2-d0")]["retrieval_score"] == pytest.approx(1.0)

    rejected = read_table(str(db), "scores_rejected").to_pylist()
    assert sorted((r["id"], r["reason"]) for r in rejected) == [("q1", "duplicate_query"), ("q9", "empty_query")]
    assert summary.rows_read == len(good) + 2 and summary.rejected_rows == 2

    # Re-running the finished job (same command: sink.mode defaults to append) reranks nothing;
    # a new shard's queries are the only work.
    again_summary = run_rerank(rerank_config(src, db, tiny_qwen3))
    assert again_summary.queries_reranked == 0 and again_summary.queries_skipped == 3
    assert read_table(str(db), "scores").num_rows == len(good)
    write_shards(tmp_path / "more", [table_of(pair_rows(["q4"]))])
    more = run_rerank(rerank_config(tmp_path / "more", db, tiny_qwen3, sink={"mode": "append"}))
    final = read_table(str(db), "scores")
    assert more.queries_reranked == 1 and final.num_rows == len(good) + len(pair_rows(["q4"]))
    assert sorted(set(final["query_id"].to_pylist())) == ["q1", "q2", "q3", "q4"]

    with pytest.raises(ConfigError, match="model.instruction: the existing table scores was reranked with"):
        run_rerank(rerank_config(src, db, tiny_qwen3, sink={"mode": "append"}, model={"instruction": "other"}))
    adapter = build_lora_adapter(tmp_path / "adapter", tiny_qwen3, prefix="base_model.model.model.")
    with pytest.raises(ConfigError, match="model.adapter: the existing table scores was reranked with adapter=None"):
        run_rerank(rerank_config(src, db, tiny_qwen3, sink={"mode": "append"}, model={"adapter": str(adapter)}))


def test_a_reranker_adapter_is_recorded_and_served(tmp_path, tiny_qwen3):
    """`model.adapter` on the reranker: its content hash in the table's provenance (append then refuses another
    adapter, above), the adapter itself in every engine's spec (scores: tests/test_reranker.py)."""
    from jobs.rerank.plan import plan_rerank_job

    src = write_shards(tmp_path / "pairs", [table_of(pair_rows(["q1"]))])
    adapter = build_lora_adapter(tmp_path / "adapter", tiny_qwen3, prefix="base_model.model.model.")
    cfg = parse_config(rerank_config(src, tmp_path / "db", tiny_qwen3, model={"adapter": str(adapter)}),
                       RerankJobConfig)
    plan = plan_rerank_job(cfg)
    assert plan.provenance["adapter"] == plan.reranker.adapter_hash
    assert plan.reranker_spec(0).engine.adapter.content_hash == plan.reranker.adapter_hash


@pytest.mark.engine
def test_embed_then_rerank_queries_embedded_like_the_table_over_their_top_k(tmp_path, tiny_qwen3, ray_session):
    from operators.infer.prompts import DEFAULT_QUERY_INSTRUCTION
    from tests.conftest import job_config, run_job
    from tests.reference import qwen3_reference

    docs = [(f"doc-{i:02d}", SENTENCES[i % len(SENTENCES)] + f" Note {i}.") for i in range(24)]
    corpus = write_shards(tmp_path / "corpus", [pa.table({"id": [d[0] for d in docs], "text": [d[1] for d in docs]})])
    db = tmp_path / "db"
    queries = {"q1": "What is the capital of China?", "q2": "Explain gravity", "q3": "binary search", "q4": " "}
    qsrc = write_shards(tmp_path / "queries", [pa.table({"query_id": list(queries), "query": list(queries.values())})])
    # One submission: embed the corpus, then rerank the queries against it (the config's `rerank:` section).
    # The table keeps its text (source.columns: [text]) so the reranker can read the candidates; it stores
    # float16 vectors (as configs/nightly.yaml does), which the candidate search reads back (eval and mine
    # search through the same operators/retrieve/top_k).
    rerank = {
        "queries": {"uri": str(qsrc)},
        "candidates": {"top_k": 3},
        "model": {"name": str(tiny_qwen3), "max_tokens": 160, "dtype": "float32"},
        "engine": {"batch_tokens": 1024, "cpus_per_actor": 0.5},
        "sink": {"table": "reranked"},
    }
    embedded = run_job(job_config(corpus, db, tiny_qwen3, source={"columns": ["text"]},
                                  model={"dimensions": 64, "max_tokens": 128}, sink={"vector_dtype": "float16"},
                                  rerank=rerank))
    summary = embedded.rerank
    assert "batch-embed rerank summary" in embedded.render()
    assert summary.queries_reranked == 3 and summary.rejected_by_reason == {"empty_query": 1}

    table = read_table(str(db), "docs")
    assert table.schema.field("vector").type.value_type == pa.float16()
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    ids, texts = table["id"].to_pylist(), dict(zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))
    good = {k: v for k, v in queries.items() if v.strip()}
    qvec = qwen3_reference(tiny_qwen3, list(good.values()), instruction=DEFAULT_QUERY_INSTRUCTION, max_tokens=128,
                           dimensions=64)
    out = read_table(str(db), "reranked").to_pylist()
    for (qid, query), qv in zip(good.items(), qvec, strict=True):
        sims = dict(zip(ids, vectors @ qv, strict=True))
        fourth = sorted(sims.values(), reverse=True)[3]
        mine = [r for r in out if r["query_id"] == qid]
        assert len(mine) == 3
        for r in mine:  # the exact top 3 by cosine, with their scores
            assert r["retrieval_score"] == pytest.approx(float(sims[r["doc_id"]]), abs=2e-3)
            assert r["retrieval_score"] >= fourth - 2e-3
        want = qwen3_rerank_reference(tiny_qwen3, [(query, texts[r["doc_id"]]) for r in mine], max_tokens=160)
        np.testing.assert_allclose([r["rerank_score"] for r in mine], want, atol=1e-3)
        assert sorted(r["rank"] for r in mine) == [1, 2, 3]


def test_candidates_table_must_keep_its_text(tmp_path, tiny_qwen3):
    import lance

    from jobs.rerank.plan import plan_rerank_job
    from operators.write.lance_sink import main_schema

    schema = main_schema(8, "float32", [], {"model": str(tiny_qwen3), "instruction": "", "input_type": "document",
                                            "dimensions": 8, "max_tokens": 64})
    lance.write_dataset(schema.empty_table(), str(tmp_path / "db" / "docs.lance"))
    qsrc = write_shards(tmp_path / "queries", [pa.table({"query_id": ["q"], "query": ["x"]})])
    raw = {"queries": {"uri": str(qsrc)}, "candidates": {"table": "docs"}, "model": {"name": str(tiny_qwen3)},
           "sink": {"uri": str(tmp_path / "db"), "table": "out"}}
    with pytest.raises(ConfigError, match=r"candidates.text_column: table 'docs' has no column 'text'.*source.columns"):
        plan_rerank_job(parse_config(raw, RerankJobConfig))


def test_rerank_section_is_checked_before_embedding(tmp_path, minilm_path, tiny_qwen3):
    from tests.conftest import job_config, run_job

    corpus = write_shards(tmp_path / "corpus", [pa.table({"id": ["a"], "text": ["x"]})])
    qsrc = write_shards(tmp_path / "queries", [pa.table({"qid": ["q"], "query": ["x"]})])
    section = {"queries": {"uri": str(qsrc)}, "sink": {"table": "r"}, "model": {"name": str(tmp_path / "nope")}}
    with pytest.raises(ConfigError, match="rerank: the reranker reads each candidate's text from the table"):
        run_job(job_config(corpus, tmp_path / "db", minilm_path, rerank=section))
    with pytest.raises(ConfigError, match=r"^rerank.model.name: .*nope"):
        run_job(job_config(corpus, tmp_path / "db", minilm_path, source={"columns": ["text"]}, rerank=section))
    section["model"] = {"name": str(minilm_path)}
    with pytest.raises(ConfigError, match=r"^rerank.model.name: .* is not a Qwen3-Reranker-style causal LM"):
        run_job(job_config(corpus, tmp_path / "db", minilm_path, source={"columns": ["text"]}, rerank=section))
    section["model"] = {"name": str(tiny_qwen3)}
    with pytest.raises(ConfigError, match=r"^rerank.queries.id_column: column 'query_id' is missing"):
        run_job(job_config(corpus, tmp_path / "db", minilm_path, source={"columns": ["text"]}, rerank=section))
    assert not (tmp_path / "db").exists(), "nothing may be written before the checks pass"
