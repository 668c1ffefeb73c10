"""`model.adapter` in the embedding job: the table holds the adapted model's vectors (documents and instructed
queries, at two Matryoshka sizes), records the adapter's hash, re-embeds every row on a sync night after the
adapter changes, refuses to append with another one, and every bad adapter is a config error before anything
is written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.core.config import ConfigError
from operators.infer.lora_adapter import base_shapes, check_adapter
from operators.write.lance_sink import read_provenance
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents
from tests.reference import cosines, qwen3_reference
from tests.test_lora_parity import merged_model
from tests.tiny_models import build_lora_adapter

ROWS = documents(24)
INSTRUCTION = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora-src")
    return write_shards(folder, [pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]})
                                 for part in (ROWS[:12], ROWS[12:])])


@pytest.fixture(scope="module")
def adapters(tiny_qwen3, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {seed: build_lora_adapter(root / f"seed{seed}", tiny_qwen3, seed=seed) for seed in (1, 2)}


def vectors_by_id(db, table="docs") -> tuple[np.ndarray, pa.Table]:
    data = read_table(str(db), table)
    by_id = dict(zip(data["id"].to_pylist(), data["vector"].to_pylist(), strict=True))
    return np.array([by_id[r[0]] for r in ROWS], dtype=np.float32), data


@pytest.mark.engine
@pytest.mark.parametrize("model, dims", [({"input_type": "document", "max_tokens": 40}, 128),
                                         ({"input_type": "query", "instruction": INSTRUCTION, "dimensions": 32,
                                           "max_tokens": 48}, 32)], ids=["documents-full", "queries-mrl32"])
def test_the_table_holds_the_adapted_models_vectors(model, dims, source, tiny_qwen3, adapters, ray_session, tmp_path):
    raw = job_config(source, tmp_path / "db", tiny_qwen3, model={**model, "adapter": str(adapters[1])})
    summary = run_job(raw)
    assert summary.rows_written == len(ROWS)
    got, table = vectors_by_id(tmp_path / "db")
    assert got.shape == (len(ROWS), dims)
    instruction = model.get("instruction")
    texts = [r[1] for r in ROWS]
    merged = merged_model(tiny_qwen3, adapters[1], tmp_path / "merged")
    want = qwen3_reference(merged, texts, instruction=instruction, max_tokens=model["max_tokens"], dimensions=dims)
    base = qwen3_reference(tiny_qwen3, texts, instruction=instruction, max_tokens=model["max_tokens"], dimensions=dims)
    assert cosines(got, want).min() >= 0.999
    assert cosines(got, base).max() < 0.99  # an adapter the engine ignored would pass the first check only here
    recorded = read_provenance(table.schema)
    assert recorded["adapter"] == check_adapter(str(adapters[1]), base_shapes(tiny_qwen3), str(tiny_qwen3)).content_hash


@pytest.mark.engine
def test_a_new_adapter_re_embeds_every_row_on_a_sync_night(source, tiny_qwen3, adapters, ray_session, tmp_path):
    model = {"max_tokens": 40}
    first = run_job(job_config(source, tmp_path / "db", tiny_qwen3, model={**model, "adapter": str(adapters[1])}))
    assert first.rows_new == len(ROWS)
    before, _ = vectors_by_id(tmp_path / "db")
    night = job_config(source, tmp_path / "db", tiny_qwen3, model={**model, "adapter": str(adapters[2])},
                       sink={"mode": "sync"})
    changed = run_job(night)
    assert (changed.rows_changed, changed.rows_unchanged) == (len(ROWS), 0)
    after, table = vectors_by_id(tmp_path / "db")
    assert table.num_rows == len(ROWS) and cosines(before, after).max() < 0.99
    # the table now records the new adapter, so eval/rerank/mine embed queries with it
    recorded = read_provenance(table.schema)
    assert recorded["adapter"] == check_adapter(str(adapters[2]), base_shapes(tiny_qwen3), str(tiny_qwen3)).content_hash
    assert recorded["adapter_uri"] == str(adapters[2].resolve())
    again = run_job(night)
    assert (again.rows_changed, again.rows_unchanged) == (0, len(ROWS))
    # and back to the base model: a recipe change too
    plain = run_job(job_config(source, tmp_path / "db", tiny_qwen3, model=model, sink={"mode": "sync"}))
    assert plain.rows_changed == len(ROWS)
    assert "adapter" not in read_provenance(read_table(str(tmp_path / "db"), "docs").schema)


@pytest.mark.engine
def test_append_refuses_another_adapter_and_writes_nothing(source, tiny_qwen3, adapters, ray_session, tmp_path):
    run_job(job_config(source, tmp_path / "db", tiny_qwen3, model={"max_tokens": 40, "adapter": str(adapters[1])}))
    version = read_table(str(tmp_path / "db"), "docs").num_rows
    raw = job_config(source, tmp_path / "db", tiny_qwen3, model={"max_tokens": 40, "adapter": str(adapters[2])},
                     sink={"mode": "append"})
    with pytest.raises(ConfigError, match="model.adapter: the existing table docs was embedded with adapter"):
        run_job(raw)
    assert read_table(str(tmp_path / "db"), "docs").num_rows == version


@pytest.mark.engine
def test_eval_embeds_the_queries_with_the_tables_adapter(source, tiny_qwen3, adapters, ray_session, tmp_path):
    """A table of instructed query vectors, searched with its own texts as queries: with the table's adapter each
    query meets its own row at cosine 1; the base model's query vectors would not (see the first test)."""
    from jobs.core.config import parse_config
    from jobs.eval.config import EvalJobConfig
    from jobs.eval.pipeline import build_pipeline, collect
    from jobs.eval.plan import plan_eval

    model = {"input_type": "query", "instruction": INSTRUCTION, "max_tokens": 48, "adapter": str(adapters[1])}
    run_job(job_config(source, tmp_path / "db", tiny_qwen3, model=model))
    ids, texts = [r[0] for r in ROWS], [r[1] for r in ROWS]
    pq.write_table(pa.table({"query_id": ids, "query": texts}), tmp_path / "queries.parquet")
    pq.write_table(pa.table({"query_id": ids, "doc_id": ids, "relevance": [1] * len(ids)}), tmp_path / "qrels.parquet")
    cfg = parse_config({"table": {"uri": str(tmp_path / "db"), "name": "docs"}, "dtype": "float32",
                        "queries": {"uri": str(tmp_path / "queries.parquet")},
                        "qrels": {"uri": str(tmp_path / "qrels.parquet")}, "run": {"progress": False}}, EvalJobConfig)
    plan = plan_eval(cfg)
    assert plan.embedding.adapter is not None and plan.embedding.instruction == INSTRUCTION
    ranked = collect(plan, build_pipeline(plan, 0.0))
    rankings = ranked.by_dims[128]
    assert set(rankings) == set(ids)
    for qid, ranking in rankings.items():  # texts that agree in their first 48 tokens tie at the top
        assert ranking[0][1] > 0.999 and dict(ranking)[qid] > 0.999, (qid, ranking[:3])


def broken(adapter, tmp_path, fault: str):
    """A copy of `adapter` with one fault."""
    import shutil

    bad = tmp_path / f"bad-{fault}"
    shutil.copytree(adapter, bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    if fault == "missing":
        (bad / "adapter_model.safetensors").unlink()
    elif fault == "not_lora":
        config["peft_type"] = "PREFIX_TUNING"
    elif fault == "shapes":
        config["r"] = 4
    elif fault == "other_base":
        config["base_model_name_or_path"] = "Qwen/Qwen3-Embedding-8B"
    (bad / "adapter_config.json").write_text(json.dumps(config))
    return bad


@pytest.mark.parametrize("fault, message", [
    ("missing", "missing adapter_model.safetensors"),
    ("not_lora", "peft_type is 'PREFIX_TUNING', not LORA"),
    ("shapes", "in the base model, but the adapter's A is 8x"),
    ("other_base", "trained on 'Qwen/Qwen3-Embedding-8B'"),
    ("nowhere", "no such folder"),
])
def test_a_bad_adapter_is_a_config_error_before_anything_is_written(fault, message, source, tiny_qwen3, adapters,
                                                                     tmp_path):
    path = tmp_path / "nowhere" if fault == "nowhere" else broken(adapters[1], tmp_path, fault)
    raw = job_config(source, tmp_path / "db", tiny_qwen3, model={"adapter": str(path)})
    with pytest.raises(ConfigError, match=f"model.adapter: .*{message}"):
        run_job(raw)
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").iterdir())
