"""Config validation: every mistake fails on the driver with the setting's path in the message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.core.config import ConfigError, apply_overrides, load_config, parse_config
from jobs.embed.config import EmbedJobConfig
from operators.infer.prompts import DEFAULT_QUERY_INSTRUCTION

BASE = {"source": {"uri": "data/x"}, "sink": {"uri": "db", "table": "t"}}


def cfg(**sections):
    raw = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


def test_defaults_need_only_source_and_sink():
    c = parse_config(cfg(), EmbedJobConfig)
    assert c.model.name == "Qwen/Qwen3-Embedding-0.6B"
    assert c.source.id_column == "id" and c.source.text_column == "text"
    assert c.engine.gpus_per_actor == "auto"
    assert (c.engine.actors.min, c.engine.actors.max) == (1, 1)
    assert c.sink.mode.value == "create" and c.sink.vector_dtype.value == "float32"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (cfg(model={"dimnsions": 8}), "model.dimnsions: unknown setting"),
        (cfg(model={"dimensions": "big"}), "model.dimensions: Input should be a valid integer"),
        (cfg(model={"dimensions": 0}), "model.dimensions: Input should be greater than 0"),
        (cfg(model={"input_type": "passage"}), "model.input_type: Input should be 'document' or 'query'"),
        (cfg(model={"instruction": "x"}), "model.instruction: documents are embedded without an instruction"),
        (cfg(engine={"actors": {"min": 3, "max": 2}}), "engine.actors: max (2) is smaller than min (3)"),
        (cfg(engine={"gpus_per_actor": -1}), "engine.gpus_per_actor"),
        (cfg(engine={"threads_per_actor": 0}), "engine.threads_per_actor"),
        (cfg(engine={"cpu_scheduling": "fifo"}),
         "engine.cpu_scheduling: Input should be 'auto', 'realtime' or 'normal'"),
        (cfg(engine={"vllm": {"dtype": "half"}}), "engine.vllm: ['dtype'] are set from the model section"),
        (cfg(sink={"mode": "upsert"}), "sink.mode: Input should be 'create', 'overwrite', 'append' or 'sync'"),
        (cfg(sync={"delete_missing": True}), "sync: delete_missing applies to sink.mode: sync only"),
        (cfg(sink={"table": "a/b"}), "sink.table: use letters"),
        (cfg(sink={"vector_dtype": "int8"}), "sink.vector_dtype"),
        (cfg(source={"columns": ["vector"]}), "source.columns: ['vector'] are written by the job itself"),
        ({"sink": {"uri": "db", "table": "t"}}, "source: required setting is missing"),
        (cfg(extra={"x": 1}), "extra: unknown setting"),
    ],
)
def test_bad_settings_name_their_path(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, EmbedJobConfig)
    assert message in str(err.value)


def test_queries_default_to_the_model_card_instruction():
    c = parse_config(cfg(model={"input_type": "query"}), EmbedJobConfig)
    assert c.model.effective_instruction == DEFAULT_QUERY_INSTRUCTION
    no_prefix = parse_config(cfg(model={"input_type": "query", "instruction": ""}), EmbedJobConfig)
    assert no_prefix.model.effective_instruction == ""
    assert parse_config(cfg(), EmbedJobConfig).model.effective_instruction == ""


def test_set_overrides_any_key_with_yaml_values():
    raw = apply_overrides(
        cfg(),
        [
            "model.dimensions=256",
            "sink.table=docs_256",
            "engine.actors.max=4",
            "engine.vllm.enforce_eager=false",
            "model.instruction=",
        ],
    )
    assert raw["model"]["dimensions"] == 256
    assert raw["sink"]["table"] == "docs_256"
    assert raw["engine"]["actors"]["max"] == 4
    assert raw["engine"]["vllm"]["enforce_eager"] is False
    assert raw["model"]["instruction"] == ""


@pytest.mark.parametrize(
    ("item", "message"), [("model.dimensions", "expected KEY=VALUE"), ("sink.table.x=1", "sink.table: is a value")]
)
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(cfg(), [item])


def test_unknown_key_from_set_is_reported(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("source: {uri: x}\nsink: {uri: db, table: t}\n")
    with pytest.raises(ConfigError, match="model.dimension: unknown setting"):
        load_config(f, ["model.dimension=3"], EmbedJobConfig)


def test_config_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="--config: no such file"):
        load_config(tmp_path / "missing.yaml", None, EmbedJobConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad, None, EmbedJobConfig)


def test_cli_reports_config_errors_fast_without_starting_ray(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text(f"source: {{uri: {tmp_path}/nothing/}}\nsink: {{uri: {tmp_path}/db, table: t}}\n")
    for cmd in ([sys.executable, "-m", "jobs.embed"], [str(Path(sys.executable).parent / "batch-embed"), "embed"]):
        t0 = time.monotonic()
        out = subprocess.run(
            [*cmd, "--config", str(f), "--set", "model.dimensions=8"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, out.stderr
        assert "source.uri: no Parquet files found" in out.stderr
        assert "Started a local Ray" not in out.stderr
        assert time.monotonic() - t0 < 30


def test_shipped_configs_validate():
    from jobs.core.config import load_config
    from jobs.embed.config import EmbedJobConfig
    from jobs.eval.config import EvalJobConfig
    from jobs.maintain.job import MaintainJobConfig
    from jobs.mine.config import MineJobConfig
    from jobs.rerank.config import RerankJobConfig

    schemas = {"demo.yaml": EmbedJobConfig, "nightly.yaml": EmbedJobConfig, "rerank-pairs.yaml": RerankJobConfig,
               "rerank-queries.yaml": RerankJobConfig, "mine.yaml": MineJobConfig, "maintain.yaml": MaintainJobConfig,
               "eval.yaml": EvalJobConfig, "rollout.yaml": EmbedJobConfig}
    configs = Path(__file__).parent.parent / "configs"
    assert {p.name for p in configs.glob("*.yaml")} == set(schemas), "a config without a schema check"
    for name, schema in schemas.items():
        assert isinstance(load_config(configs / name, [], schema), schema)


@pytest.mark.parametrize("job,text,expected", [
    ("rerank", "sink: {uri: db, table: t}\n", "pairs: give either pairs"),
    ("mine", "pairs: {uri: p}\ncandidates: {uri: db, table: t}\noutput: {path: o.jsonl}\nmining: {range_max: 0}\n",
     "mining.range_max: Input should be greater than or equal to 1"),
])
def test_rerank_and_mine_commands_report_config_errors(tmp_path: Path, job, text, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    out = subprocess.run([str(Path(sys.executable).parent / "batch-embed"), job, "--config", str(f)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and expected in out.stderr, out.stderr
