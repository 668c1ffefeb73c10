"""Eval-gated publishing (`gate:` on an overwrite): a rebuild that fails its gate exits 6 and leaves the table as it
was, its candidate kept as a detached version that `batch-embed eval` can open; one that passes is published; a
killed gated run publishes nothing until a re-run passes.

The judged queries are the documents' own texts, embedded as instructed queries like the table's rows, so the
table built from the right texts ranks each query's document first (score ~1) and a rebuild from shuffled texts
(the bad rebuild) does not: real metrics from real engines, with a known answer.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.core.config import ConfigError, parse_config
from operators.write.lance_sink import read_provenance
from operators.write.run_ledger import open_dataset
from tests.conftest import job_config, read_table, run_job, write_shards
from tests.corpus import documents
from tests.processes import finish, run_cli
from tests.tiny_models import build_lora_adapter

ROWS = [(f"doc-{i:04d}", f"{i} {text}") for i, (_, text) in enumerate(documents(24))]  # unique first tokens
MODEL = {"input_type": "query", "instruction": "Find the passage", "max_tokens": 48}


def source(folder, rotate: int = 0):
    ids, texts = [r[0] for r in ROWS], [r[1] for r in ROWS]
    texts = texts[rotate:] + texts[:rotate]  # rotate > 0: every id gets another row's text
    return write_shards(folder, [pa.table({"id": ids[:12], "text": texts[:12]}),
                                 pa.table({"id": ids[12:], "text": texts[12:]})])


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-set")
    ids, texts = [r[0] for r in ROWS], [r[1] for r in ROWS]
    pq.write_table(pa.table({"query_id": ids, "query": texts}), root / "queries.parquet")
    pq.write_table(pa.table({"query_id": ids, "doc_id": ids, "relevance": [1] * len(ids)}), root / "qrels.parquet")
    return {"queries": {"uri": str(root / "queries.parquet")}, "qrels": {"uri": str(root / "qrels.parquet")},
            "metric": "mrr@10"}


def gated(src, db, model_path, judged, **bars) -> dict:
    return job_config(src, db, model_path, model=MODEL, sink={"mode": "overwrite"}, gate={**judged, **bars})


def table_vectors(db) -> dict[str, list[float]]:
    t = read_table(str(db), "docs")
    return dict(zip(t["id"].to_pylist(), t["vector"].to_pylist(), strict=True))


def run_exit_code(config, sets: list[str] | None = None) -> int:
    """`batch-embed embed --config CONFIG --set ...` in this process: its exit status (`config`: a path, or a
    raw config written to a file next to nothing else)."""
    from jobs.core.command import run_command
    from jobs.embed.config import EmbedJobConfig
    from jobs.embed.job import run

    if isinstance(config, dict):
        path = Path(tempfile.mkdtemp()) / "job.yaml"
        path.write_text(yaml.safe_dump(config))
        config = path
    return run_command(argparse.Namespace(config=str(config), overrides=sets or []), EmbedJobConfig, run)


@pytest.mark.engine
def test_a_failed_gate_exits_6_and_leaves_the_table_as_it_was(tiny_qwen3, judged, ray_session, tmp_path, capsys):
    db = tmp_path / "db"
    good = source(tmp_path / "good")
    first = run_job(job_config(good, db, tiny_qwen3, model=MODEL))
    before, version = table_vectors(db), first.table_version

    bad = gated(source(tmp_path / "bad", rotate=5), db, tiny_qwen3, judged, min=0.5)
    assert run_exit_code(bad) == 6
    out, err = capsys.readouterr()
    assert re.search(r"gate failed: mrr@10 0\.\d+ < 0\.5 \(gate\.min\)", err), err
    assert "candidate kept as detached version" in out
    live = open_dataset(str(db / "docs.lance"), None)
    assert live.version == version and table_vectors(db) == before  # readers see yesterday's table, untouched

    # The candidate is inspectable: batch-embed eval opens it by the version the summary names and scores it
    # as the gate did (the same metric code), side by side with the current table (compare:).
    summary = json.loads(sorted((db / "_runs").glob("docs-*.json"))[-1].read_text())
    gate = summary["gate"]
    assert gate["passed"] is False and gate["candidate"] < 0.5 and gate["queries"] == len(ROWS)
    assert summary["table_version"] == version and summary["rows_written"] == len(ROWS)
    assert "Gate: mrr@10" in sorted((db / "_runs").glob("docs-*.html"))[-1].read_text()
    from jobs.eval.config import EvalJobConfig
    from jobs.eval.job import run as run_eval

    both = run_eval(parse_config({"table": {"uri": str(db), "name": "docs", "version": gate["candidate_version"]},
                                  "compare": {}, "queries": judged["queries"], "qrels": judged["qrels"],
                                  "dtype": "float32", "eval": {"metrics": ["mrr@10"]}, "run": {"progress": False},
                                  "output": {"path": str(tmp_path / "both.json")}}, EvalJobConfig))
    assert both.by_dims[128]["mrr@10"] == pytest.approx(gate["candidate"])
    assert both.table_version == gate["candidate_version"] and both.compare["table_version"] == version
    current = both.compare["dims"]["128"]["mrr@10"]
    assert current > 0.9 and both.compare["delta"]["128"]["mrr@10"] == pytest.approx(gate["candidate"] - current,
                                                                                   abs=1e-5)
    assert "lead" in both.render() and "Side by side" in (tmp_path / "both.html").read_text()
    # The README's rollout: configs/rollout.yaml, pointed at this machine's files, the tiny model and a random
    # adapter (standing in for ms-swift's), rebuilds from the right texts (float16 vectors, as the config says,
    # over yesterday's float32 ones), passes against the current table (max_drop) and is published; the
    # refused candidate is forgotten and its files removed.
    adapter = build_lora_adapter(tmp_path / "adapter", tiny_qwen3, seed=1)
    sets = [f"source.uri={good}", "source.columns=[]", f"model.name={tiny_qwen3}", f"model.adapter={adapter}",
            "model.input_type=query", f"model.instruction={MODEL['instruction']}", "model.dimensions=null",
            "model.max_tokens=48", "model.dtype=float32", "engine.actors.min=1", "engine.actors.max=1",
            "engine.gpus_per_actor=0", "engine.cpus_per_actor=1", "engine.batch_tokens=2048", f"sink.uri={db}",
            "sink.table=docs", f"gate.queries.uri={judged['queries']['uri']}",
            f"gate.qrels.uri={judged['qrels']['uri']}",
            "gate.metric=mrr@10", "gate.min=0.5", "gate.max_drop=0.02", "run.progress=false"]
    assert run_exit_code("configs/rollout.yaml", sets) == 0
    passed = json.loads(sorted((db / "_runs").glob("docs-*.json"))[-1].read_text())
    assert passed["gate"]["passed"] and passed["gate"]["current"] > 0.9 and passed["gate"]["current_version"] == version
    assert passed["gate"]["candidate"] >= passed["gate"]["current"] - 0.02
    assert read_provenance(read_table(str(db), "docs").schema)["adapter"]  # the adapted vectors are live
    assert passed["table_version"] == version + 1 and table_vectors(db).keys() == before.keys()
    assert not list((db / "docs.lance" / "_versions").glob("d*.manifest"))
    referenced = {f.path.rsplit("/", 1)[-1] for frag in open_dataset(str(db / "docs.lance"), None).get_fragments()
                  for f in frag.data_files()}
    on_disk = {p.name for p in (db / "docs.lance" / "data").iterdir()}
    first_files = {f.path.rsplit("/", 1)[-1] for frag in open_dataset(str(db / "docs.lance"), None)
                   .checkout_version(version).get_fragments() for f in frag.data_files()}
    assert on_disk == referenced | first_files  # the published table and what time travel needs, nothing else


@pytest.mark.engine
@pytest.mark.kill
def test_a_killed_gated_run_publishes_nothing_until_a_rerun_passes(tiny_qwen3, judged, tmp_path):
    db = tmp_path / "db"
    good = source(tmp_path / "good")
    raw = gated(good, db, tiny_qwen3, judged, min=0.5)
    # first night: no table yet; killed after the gate passed, before publishing
    assert finish(run_cli(raw, tmp_path, kill_at="after_gate:1")) == -signal.SIGKILL
    ds = open_dataset(str(db / "docs.lance"), None)
    assert ds is None or ds.count_rows() == 0  # never published
    assert list((db / "docs.lance" / "_versions").glob("d*.manifest"))  # the staged candidate, detached
    proc = run_cli(raw, tmp_path)
    assert finish(proc) == 0, proc.log_path.read_text()[-3000:]
    assert set(table_vectors(db)) == {r[0] for r in ROWS}
    assert not list((db / "docs.lance" / "_versions").glob("d*.manifest"))


def test_gate_settings_are_checked_before_anything_runs(tmp_path, judged):
    from jobs.embed.config import EmbedJobConfig

    base = job_config(tmp_path / "src", tmp_path / "db", "m", sink={"mode": "overwrite"})
    with pytest.raises(ConfigError, match="gate: gates a rebuild, sink.mode: overwrite"):
        parse_config({**base, "sink": {**base["sink"], "mode": "sync"}, "gate": {**judged, "min": 0.3}},
                     EmbedJobConfig)
    with pytest.raises(ConfigError, match="gate.min: a gate needs a bar"):
        parse_config({**base, "gate": judged}, EmbedJobConfig)
    with pytest.raises(ConfigError, match="gate.metric: .*'hits@3' is not a metric"):
        parse_config({**base, "gate": {**judged, "metric": "hits@3", "min": 0.3}}, EmbedJobConfig)


def test_gate_inputs_are_read_at_plan_time(tiny_qwen3, judged, tmp_path):
    src = source(tmp_path / "src")
    missing = {**judged, "qrels": {"uri": str(tmp_path / "nowhere.parquet")}, "min": 0.3}
    with pytest.raises(ConfigError, match="gate.qrels.uri"):
        run_job(job_config(src, tmp_path / "db", tiny_qwen3, model=MODEL, sink={"mode": "overwrite"}, gate=missing))
    with pytest.raises(ConfigError, match="gate.dimensions: 512 is larger than the table's 128"):
        run_job(job_config(src, tmp_path / "db", tiny_qwen3, model=MODEL, sink={"mode": "overwrite"},
                           gate={**judged, "min": 0.3, "dimensions": 512}))
    assert not (tmp_path / "db").exists()
