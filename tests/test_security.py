"""Security: planted credentials never come out, data is never executed, local Ray stays on loopback."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.core import redaction
from jobs.embed.config import EmbedJobConfig
from tests.conftest import job_config, read_table
from tests.corpus import documents
from tests.processes import finish, run_cli

PLANTED = {
    "config_key": "AKIAPLANTEDKEY0001",
    "config_secret": "planted-config-secret-5d41402abc4b2a76",
    "env_secret": "planted-env-secret-7d793037a0760186",
    "env_token": "planted-session-token-9e107d9d372bb682",
}


def test_redaction_masks_registered_values_and_secret_named_settings():
    redaction.register_from({"sink": {"storage_options": {"secret": "s3cr3t-value", "endpoint_url": "http://x"}},
                             "source": {"storage_options": "whole-string-option"}}, environ={})
    assert redaction.redact("boom: s3cr3t-value at http://x") == "boom: *** at http://x"
    assert redaction.redact("got 'whole-string-option'") == "got '***'"
    echo = redaction.masked({"storage_options": {"key": "k-id", "aws_secret_access_key": "v", "region": "eu"},
                             "id_column": "id", "keep_versions": 3})
    assert echo == {"storage_options": {"key": "***", "aws_secret_access_key": "***", "region": "eu"},
                    "id_column": "id", "keep_versions": 3}


def test_trust_remote_code_is_off_unless_the_config_says_so(tmp_path):
    base = {"source": {"uri": str(tmp_path)}, "sink": {"uri": str(tmp_path), "table": "t"}}
    cfg = EmbedJobConfig.model_validate(base)
    assert cfg.model.trust_remote_code is False
    on = EmbedJobConfig.model_validate({**base, "model": {"trust_remote_code": True}})
    assert on.model.trust_remote_code is True


def test_local_ray_listens_on_loopback_only(ray_session):
    """Every socket the job's local Ray (GCS, raylet, agents, workers) listens on is a loopback address."""
    assert {n["NodeManagerAddress"] for n in ray_session.nodes()} == {"127.0.0.1"}
    ray_session.get(ray_session.remote(lambda: 1).remote())  # a worker is up too
    ours = [psutil.Process()] + psutil.Process().children(recursive=True)
    listening = []
    for proc in ours:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(proc.name(), c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    assert any(name.startswith(("gcs_server", "raylet")) for name, _ in listening), listening
    exposed = [(n, ip) for n, ip in listening if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


@pytest.mark.engine
def test_pickled_text_is_embedded_as_data_never_run(tiny_qwen3, ray_session, tmp_path):
    from jobs.core.config import parse_config
    from jobs.embed.job import run

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = pickle.dumps(Exploit(), protocol=0)  # ASCII: survives as a UTF-8 text
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": pa.array([payload, pickle.dumps(Exploit())], pa.binary())}),
                   src / "part-0.parquet")
    summary = run(parse_config(job_config(src, tmp_path / "db", tiny_qwen3), EmbedJobConfig))
    assert not marker.exists(), "a pickle in the data was executed"
    assert summary.rows_read == 2 and summary.rows_written + summary.rows_rejected == 2
    assert read_table(str(tmp_path / "db"), "docs")["id"].to_pylist() == ["p1"]  # protocol 0 is text, the other not


@pytest.mark.faults
@pytest.mark.s3
@pytest.mark.engine
def test_planted_credentials_never_appear_in_output_summaries_or_ray_logs(s3_endpoint, tiny_qwen3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    bucket = f"secrets-{time.monotonic_ns()}"
    fs.mkdir(bucket)
    rows = documents(20)
    local = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}), local)
    fs.put(str(local), f"{bucket}/src/part-0.parquet")
    opts = {"endpoint_url": s3_endpoint, "key": PLANTED["config_key"], "secret": PLANTED["config_secret"]}
    raw = job_config(f"s3://{bucket}/src/", f"s3://{bucket}/db", tiny_qwen3)
    raw["source"]["storage_options"] = raw["sink"]["storage_options"] = opts
    env = {"AWS_SECRET_ACCESS_KEY": PLANTED["env_secret"], "AWS_SESSION_TOKEN": PLANTED["env_token"]}

    ok = run_cli(raw, tmp_path, env=env)
    assert finish(ok) == 0, ok.log_path.read_text()[-3000:]
    # failures print more: a config error that echoes its input, and an unreachable endpoint
    bad_config = {**raw, "sink": {**raw["sink"], "storage_options": PLANTED["config_secret"]}}
    assert finish(run_cli(bad_config, tmp_path, env=env)) == 2
    dead = {**raw, "source": {**raw["source"], "storage_options": {**opts, "endpoint_url": "http://127.0.0.1:9"}}}
    assert finish(run_cli(dead, tmp_path, env=env)) == 2

    outputs = {p: p.read_text(errors="replace") for p in tmp_path.glob("job-*.log")}
    assert "config " in outputs[ok.log_path] and '"secret": "***"' in outputs[ok.log_path]  # the config echo
    assert any("storage_options" in text for p, text in outputs.items() if p != ok.log_path)
    summaries = {f"s3://{p}": fs.cat(p).decode() for p in fs.find(f"{bucket}/db/_runs")}
    assert summaries
    session = re.search(r"(/tmp/ray/session_[^/\s]+)", outputs[ok.log_path])
    assert session, "the good run's Ray session folder was not found in its output"
    ray_logs = {p: p.read_text(errors="replace") for p in Path(session.group(1)).rglob("*") if p.is_file()}
    assert len(ray_logs) > 5
    for where, text in {**outputs, **summaries, **ray_logs}.items():
        for name, value in PLANTED.items():
            assert value not in text, f"{name} leaked into {where}"
