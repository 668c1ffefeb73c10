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
