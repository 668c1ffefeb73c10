"""Nightly runs that stay correct over many nights (issue 30), each test a situation a nightly meets.

- copied columns changed, text not: updated in place of the old row, vector bytes copied, nothing re-embedded
  (before: reported unchanged, the old url kept forever);
- a finished append job re-run: adds nothing (before: every row a second time);
- a slow engine: commits keep `commit_every_seconds` (before: nothing committed until rows_per_fragment rows);
- row accounting that does not add up: the run fails before the commit that marks it complete, and resumes
  (before: checked after that commit: reported, never undone);
- a night killed after some commits, then a new listing: the next night syncs (before: exit 2 every night).
Vectors are stored as float16 here, as `configs/nightly.yaml` does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ConfigError
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents

pytestmark = pytest.mark.engine

DOCS = documents(40)


def with_urls(rows, changed=frozenset(), edited=frozenset()):
    return pa.table({
        "id": [i for i, _ in rows],
        "text": [t + " (edited)" if i in edited else t for i, t in rows],
        "url": [f"https://example.com/{i}" + ("?v=2" if i in changed else "") for i, _ in rows],
    })


def nightly(src, db, model, **sink):
    # text copied too (as configs/nightly.yaml does): its hash is in the fingerprint, so sync compares url only
    # Simulated engines (vectors a pure function of the token ids): the nights' bookkeeping is under test.
    raw = job_config(src, db, model, source={"columns": ["url", "text"]}, engine={"backend": "simulated"},
                     sink={"mode": "sync", "vector_dtype": "float16", **sink}, sync={"delete_missing": True})
    return raw


def stored(db):
    t = read_table(str(db), "docs")
    return {i: (u, v, fp) for i, u, v, fp in zip(t["id"].to_pylist(), t["url"].to_pylist(),
                                                   t["vector"].to_pylist(), t["fingerprint"].to_pylist(),
                                                   strict=True)}, t


def test_sync_updates_copied_columns_without_re_embedding(tiny_qwen3, ray_session, tmp_path):
    run_job(nightly(write_shards(tmp_path / "d1", [with_urls(DOCS)]), tmp_path / "db", tiny_qwen3))
    before, t1 = stored(tmp_path / "db")
    assert t1.schema.field("vector").type.value_type == pa.float16()

    moved = {f"doc-{i:04d}" for i in (1, 7, 8, 30)}
    edited = {f"doc-{i:04d}" for i in (2, 9)}
    src2 = write_shards(tmp_path / "d2", [with_urls(DOCS, changed=moved, edited=edited)])
    day2 = run_job(nightly(src2, tmp_path / "db", tiny_qwen3))
    assert (day2.rows_new, day2.rows_changed, day2.rows_columns_updated, day2.rows_unchanged) == (0, 2, 4, 34)
    assert day2.rows_written == 6
    after, t2 = stored(tmp_path / "db")
    n_tokens = dict(zip(t2["id"].to_pylist(), t2["n_tokens"].to_pylist(), strict=True))
    assert day2.tokens == sum(n_tokens[i] for i in edited)  # the engine saw only the edited texts
    assert len(t2) == len(DOCS) and set(after) == set(before)
    texts = dict(zip(t2["id"].to_pylist(), t2["text"].to_pylist(), strict=True))
    assert all(texts[i].endswith(" (edited)") == (i in edited) for i in texts)
    for i, (url, vector, fp) in after.items():
        if i in moved:
            assert url.endswith("?v=2")
            assert np.array(vector, np.float16).tobytes() == np.array(before[i][1], np.float16).tobytes()
            assert fp == before[i][2]
        elif i not in edited:
            assert (url, vector, fp) == before[i]
    assert "columns updated 4" in day2.render()

    day3 = run_job(nightly(src2, tmp_path / "db", tiny_qwen3))  # nothing changed: nothing rewritten
    assert (day3.rows_written, day3.rows_columns_updated, day3.rows_unchanged) == (0, 0, len(DOCS))


def test_rerunning_a_finished_append_adds_nothing(tiny_qwen3, ray_session, tmp_path):
    src = write_shards(tmp_path / "src", [with_urls(DOCS[:30])])
    raw = job_config(src, tmp_path / "db", tiny_qwen3, sink={"mode": "append", "vector_dtype": "float16"})
    assert run_job(raw).rows_written == 30
    again = run_job(raw)
    assert (again.rows_written, again.rows_rejected, again.rejected_by_reason) == (0, 30, {"id_exists": 30})
    assert len(read_table(str(tmp_path / "db"), "docs")) == 30

    more = write_shards(tmp_path / "more", [with_urls(DOCS[20:])])  # 10 known ids, 10 new ones
    raw["source"]["uri"] = str(more)
    third = run_job(raw)
    assert (third.rows_written, third.rejected_by_reason) == (10, {"id_exists": 10})
    ids = read_table(str(tmp_path / "db"), "docs")["id"].to_pylist()
    assert sorted(ids) == sorted(i for i, _ in DOCS) and len(ids) == len(set(ids))
    rejected = read_table(str(tmp_path / "db"), "docs_rejected")
    assert set(rejected["reason"].to_pylist()) == {"id_exists"}

    raw["sink"]["mode"] = "overwrite"  # float16 through an overwrite too
    assert run_job(raw).rows_written == 20
    rebuilt = read_table(str(tmp_path / "db"), "docs")
    assert len(rebuilt) == 20 and rebuilt.schema.field("vector").type.value_type == pa.float16()


def test_commits_keep_their_cadence_whatever_the_engine_speed(tiny_qwen3, ray_session, tmp_path):
    import lance

    src = write_shards(tmp_path / "src", [with_urls(documents(160))])
    raw = job_config(src, tmp_path / "db", tiny_qwen3, engine={"batch_tokens": 256},
                     sink={"rows_per_fragment": 10_000, "commit_every_rows": 100_000, "commit_every_seconds": 0.2})
    summary = run_job(raw)
    # 160 rows, far below rows_per_fragment: before, one writer batch held them all and the only
    # commit was the last one; now each engine batch is written as it comes and committed on time.
    assert summary.commits >= 3
    ds = lance.dataset(str(tmp_path / "db" / "docs.lance"))
    first_commit_rows = lance.dataset(str(tmp_path / "db" / "docs.lance"), version=1).count_rows()
    assert 0 < first_commit_rows < 160 and ds.count_rows() == 160


def test_accounting_mismatch_fails_before_the_run_is_marked_complete(tiny_qwen3, ray_session, tmp_path,
                                                                     monkeypatch):
    from operators.write.lance_committer import LanceCommitter
    from operators.write.run_ledger import open_dataset, read_ledger

    src = write_shards(tmp_path / "src", [with_urls(DOCS)])
    raw = job_config(src, tmp_path / "db", tiny_qwen3, engine={"batch_tokens": 256}, sink={"commit_every_rows": 8})
    add, dropped = LanceCommitter.add, []

    def lose_one_report(self, row):  # a bug between writer and committer: one report never counted
        if row["table"] == "main" and not dropped:
            dropped.append(row["rows"])
            return
        add(self, row)

    monkeypatch.setattr(LanceCommitter, "add", lose_one_report)
    with pytest.raises(RuntimeError, match="row accounting mismatch.*re-running resumes"):
        run_job(raw)
    ledger = read_ledger(open_dataset(str(tmp_path / "db" / "docs.lance"), None))
    assert ledger is not None and not ledger.complete  # still resumable

    monkeypatch.setattr(LanceCommitter, "add", add)
    resumed = run_job(raw)
    assert resumed.rows_resumed + resumed.rows_written == len(DOCS) and resumed.rows_resumed > 0
    ids = read_table(str(tmp_path / "db"), "docs")["id"].to_pylist()
    assert sorted(ids) == sorted(i for i, _ in DOCS)


@pytest.mark.kill
def test_a_killed_night_never_blocks_the_next(tiny_qwen3, ray_session, tmp_path):
    import signal

    from tests.processes import finish, run_cli

    db = tmp_path / "db"
    run_job(nightly(write_shards(tmp_path / "d1", [with_urls(DOCS)]), db, tiny_qwen3))
    night2 = [(i, t) for i, t in DOCS if i != "doc-0039"] + [(f"new-{i}", f"Fresh text number {i}.") for i in range(12)]
    edited2 = {f"doc-{i:04d}" for i in range(3, 13)}
    raw2 = nightly(write_shards(tmp_path / "d2", [with_urls(night2, edited=edited2)]), db,
                   tiny_qwen3, rows_per_fragment=4, commit_every_rows=3)
    raw2["engine"]["batch_tokens"] = 256
    assert finish(run_cli(raw2, tmp_path, kill_at="after_commit:2")) == -signal.SIGKILL

    # The third night's listing differs again (it always does).
    night3 = night2[:-4] + [(f"newer-{i}", f"Another text, number {i}.") for i in range(5)]
    src3 = write_shards(tmp_path / "d3", [with_urls(night3, changed={"doc-0020"}, edited=edited2)])
    append = nightly(src3, db, tiny_qwen3, mode="append")
    del append["sync"]
    with pytest.raises(ConfigError, match="unfinished run .* sink.mode: sync to bring the table to the new source"):
        run_job(append)
    day3 = run_job(nightly(src3, db, tiny_qwen3))
    assert day3.abandoned_run is not None and "ABANDONED RUN" in day3.render()
    # rows the killed night committed are not embedded again (new-0..new-7 are in night 3 unchanged)
    assert day3.rows_written < len(night3)

    clean = run_job(nightly(src3, tmp_path / "clean", tiny_qwen3))
    got, t = stored(db)
    want, _ = stored(tmp_path / "clean")
    assert len(t) == len(got) == len(want) and set(got) == set(want)
    for i, (url, vector, fp) in want.items():
        assert got[i][0] == url and got[i][2] == fp
        np.testing.assert_allclose(np.array(got[i][1], np.float32), np.array(vector, np.float32), atol=2e-3)
    assert clean.rows_new == len(night3)
