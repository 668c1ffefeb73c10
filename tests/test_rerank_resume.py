"""A killed reranking job, re-run with the same command, ends with every pair exactly once."""

from __future__ import annotations

import pytest

from operators.write.run_ledger import open_dataset, read_ledger
from tests.conftest import read_table, write_shards
from tests.processes import finish, run_cli
from tests.test_rerank_job import pair_rows, rerank_config, run_rerank, table_of

pytestmark = [pytest.mark.engine, pytest.mark.kill]


def pairs_of(db) -> list[tuple]:
    rows = read_table(str(db), "scores").to_pylist()
    return sorted((r["query_id"], r["doc_id"], round(r["rerank_score"], 4), r["rank"]) for r in rows)


@pytest.mark.parametrize("point", ["mid_commit:2", "after_commit:3"])
def test_killed_rerank_resumes_to_the_uninterrupted_result(tmp_path, tiny_qwen3, ray_session, point, request):
    qids = [f"q{i}" for i in range(1, 5)] * 3  # 12 queries of 3 pairs, each query under its own id
    rows = [(f"{q}-{n}", *r[1:]) for n, q in enumerate(qids) for r in pair_rows([q])]
    shards = [table_of(rows[:21]), table_of(rows[21:])]  # a shard boundary between two queries
    src = write_shards(tmp_path / "pairs", shards)
    raw = rerank_config(src, tmp_path / "db", tiny_qwen3, sink={"commit_every_rows": 6, "rows_per_fragment": 6},
                        engine={"vllm": {"max_num_seqs": 8}})

    killed = run_cli(raw, tmp_path, kill_at=point, module="jobs.rerank")
    assert finish(killed) != 0
    ledger = read_ledger(open_dataset(str(tmp_path / "db" / "scores.lance"), None))
    assert ledger is not None and not ledger.complete and ledger.done, "the kill came before any commit"
    assert finish(run_cli(raw, tmp_path, module="jobs.rerank")) == 0

    reference = tmp_path / "reference"
    run_rerank(rerank_config(src, reference, tiny_qwen3))
    assert pairs_of(tmp_path / "db") == pairs_of(reference)
    assert len(pairs_of(reference)) == len(rows)
