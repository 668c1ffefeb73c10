"""Fleet behaviour without GPUs: the simulated engine (`engine.backend: simulated`) in real jobs on a real Ray.

The cluster-scale half (logical GPUs on two nodes, engines killed) is in tests/test_cluster.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ConfigError
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents

pytestmark = pytest.mark.fleet

ROWS = documents(120)


def simulated_config(tmp_path, model, **engine):
    src = write_shards(tmp_path / "src", [pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]})
                                          for part in (ROWS[:60], ROWS[60:])])
    cfg = job_config(src, tmp_path / "db", model, model={"dimensions": 32, "max_tokens": 64})
    cfg["engine"].update({"backend": "simulated", "simulated": {"tokens_per_second": 20_000}, **engine})
    return cfg


def test_a_simulated_engine_runs_the_real_job_and_its_vectors_resume_and_sync_as_real_ones(
        tmp_path, ray_session, tiny_qwen3):
    from operators.infer.embedder import Tokenizer
    from operators.infer.matryoshka import mrl_truncate
    from operators.infer.model_spec import load_model_spec
    from operators.infer.simulated_engine import simulated_vectors

    cfg = simulated_config(tmp_path, tiny_qwen3)
    summary = run_job(cfg)
    assert summary.rows_written == len(ROWS) and summary.engine_dtype == "simulated"
    table = read_table(str(tmp_path / "db"), "docs")
    # each vector: the model's real tokenizer, the simulated engine's pure function, MRL to 32
    ids, _ = Tokenizer(load_model_spec(str(tiny_qwen3)), 64).encode([t for _, t in ROWS[:5]])
    want = mrl_truncate(simulated_vectors(ids, 128), 32)
    got = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist(), strict=True))
    assert np.allclose(np.array([got[i] for i, _ in ROWS[:5]]), want, atol=1e-6)
    assert set(table["n_tokens"].to_pylist()) != {0}

    # Where the time went, from the engine's own per-batch timings.
    split = summary.time_split
    assert split["engines"] and split["engines_busy_s"] > 0 and 0 < split["busy_share"] <= 1
    (engine,) = split["engines"].values()
    assert engine["rows"] == len(ROWS) and engine["batches"] >= 1 and engine["startup_s"] >= 0
    assert split["write_s"] > 0 and split["writes"] >= 1 and split["commit_s"] > 0
    assert "time split" in summary.render() and "engines busy" in summary.render()
    html = Path(summary.report_path).read_text()
    assert "Where the time went" in html and "busy share" in html

    # A second night: same vectors, nothing re-embedded.
    again = run_job({**cfg, "sink": {**cfg["sink"], "mode": "sync"}})
    assert again.rows_unchanged == len(ROWS) and again.rows_new == again.rows_changed == 0

    # Real engines never write into a simulated table, and the other way round.
    real = {**cfg, "engine": {k: v for k, v in cfg["engine"].items() if k not in ("backend", "simulated")},
            "sink": {**cfg["sink"], "mode": "sync"}}
    with pytest.raises(ConfigError, match=r"^engine\.backend: the existing table docs holds simulated vectors"):
        run_job(real)
    run_job({**real, "sink": {**real["sink"], "table": "real", "mode": "create"}})
    with pytest.raises(ConfigError, match=r"^engine\.backend: the existing table real holds vectors of a real model"):
        run_job({**cfg, "sink": {**cfg["sink"], "table": "real", "mode": "append"}})


def test_partitioned_registry_and_index_answer_as_one_actor_would(tmp_path, ray_session):
    """100M-row runs split the id registry by hash and the table index by fragment; the answers must not change."""
    import lance

    from operators.prepare.fingerprints import hash_strings
    from operators.prepare.id_registry import IdRegistry, RegistryClient
    from operators.prepare.table_index import IndexClient, TableIndex

    remote = ray_session.remote(num_cpus=0)
    registry = RegistryClient([remote(IdRegistry).remote() for _ in range(3)])
    ids = hash_strings(pa.array([f"doc-{i}" for i in range(3000)]))
    assert registry.claim(ids, np.arange(3000, dtype=np.uint64)).all()
    again = registry.claim(ids[:4], np.array([0, 1, 7, 7], dtype=np.uint64))
    assert again.tolist() == [True, True, False, False] and registry.size() == 3000
    assert registry.seen(np.concatenate([ids[:2], hash_strings(pa.array(["other"]))])).tolist() == [True, True, False]
    sizes = [ray_session.get(h.size.remote()) for h in registry.handles]
    assert sum(sizes) == 3000 and min(sizes) > 800  # every partition holds its share

    uri = str(tmp_path / "t.lance")
    for i in range(5):  # five fragments
        rows = range(i * 100, (i + 1) * 100)
        lance.write_dataset(pa.table({"id": [f"doc-{r}" for r in rows], "fingerprint": [f"fp-{r}" for r in rows],
                                      "n": list(rows)}), uri, mode="append" if i else "create")
    whole = IndexClient([remote(TableIndex).remote(uri, None, 10, "id", "fingerprint", ("n",))])
    split = IndexClient([remote(TableIndex).remote(uri, None, 10, "id", "fingerprint", ("n",), p, 2) for p in (0, 1)])
    assert split.size() == whole.size() == 500
    assert [ray_session.get(h.size.remote()) for h in split.handles] == [300, 200]
    asked = hash_strings(pa.array(["doc-0", "doc-499", "doc-250", "nope"]))
    for a, b in zip(whole.lookup(asked), split.lookup(asked), strict=True):
        assert np.array_equal(a, b)
    assert whole.lookup(asked)[0].tolist() == [True, True, True, False]
