"""The README's offline demo: real stdlib docstrings, the packaged MiniLM, sensible neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.core.config import load_config
from jobs.demo_corpus.job import write_corpus
from jobs.embed.config import EmbedJobConfig
from jobs.embed.job import run

pytestmark = [pytest.mark.engine, pytest.mark.demo]


def test_demo_config_finds_sensible_neighbours(minilm_path, ray_session, tmp_path):
    import lancedb
    from sentence_transformers import SentenceTransformer

    n = write_corpus(tmp_path / "demo")
    assert n > 1000
    cfg = load_config(
        "configs/demo.yaml", [f"source.uri={tmp_path / 'demo'}", f"sink.uri={tmp_path / 'db'}", "run.progress=false"],
        EmbedJobConfig,
    )
    summary = run(cfg)
    assert summary.rows_written + summary.rows_rejected == n

    table = lancedb.connect(str(tmp_path / "db")).open_table("stdlib_docs")
    model = SentenceTransformer(str(minilm_path), device="cpu")
    for query, expected_module in [
        ("parse command line options and arguments", "argparse"),
        ("compress data with gzip", "gzip"),
        ("regular expression pattern matching", "re"),
        ("random number generator", "random"),
    ]:
        q = model.encode(query, normalize_embeddings=True)
        hits = table.search(np.asarray(q)).limit(5).to_list()
        modules = [h["module"] for h in hits]
        assert expected_module in modules, f"{query!r} -> {[h['id'] for h in hits]}"
