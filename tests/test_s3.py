"""Object storage end to end: shards read from, and the table written to, a real S3 API on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import job_config, read_table, run_job
from tests.corpus import documents
from tests.reference import cosines, qwen3_reference

pytestmark = [pytest.mark.engine, pytest.mark.s3]


def test_s3_source_and_sink(s3_endpoint, tiny_qwen3, ray_session):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir("corpus")
    fs.mkdir("lake")
    rows = documents(30)
    for i in range(3):
        part = rows[i * 10 : (i + 1) * 10]
        with fs.open(f"corpus/nightly/part-{i:05d}.parquet", "wb") as f:
            pq.write_table(pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part]}), f)

    # Only the endpoint is configured; credentials come from the environment.
    raw = job_config(
        "s3://corpus/nightly/",
        "s3://lake/db",
        tiny_qwen3,
        source={"storage_options": {"endpoint_url": s3_endpoint}},
        sink={"storage_options": {"endpoint_url": s3_endpoint}},
    )
    summary = run_job(raw)
    assert summary.shards == 3 and summary.rows_written == 30 and summary.rows_rejected == 0
    assert summary.table_uri == "s3://lake/db/docs.lance"

    table = read_table(
        "s3://lake/db", "docs", {"aws_endpoint": s3_endpoint, "allow_http": "true", "aws_region": "us-east-1"}
    )
    by_id = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist(), strict=True))
    got = np.array([by_id[r[0]] for r in rows], dtype=np.float32)
    assert cosines(got, qwen3_reference(tiny_qwen3, [r[1] for r in rows])).min() >= 0.999

    # the JSON summary sits next to the table in the bucket
    assert summary.summary_path.startswith("s3://lake/db/_runs/")
    saved = json.loads(fs.cat(summary.summary_path.removeprefix("s3://")))
    assert saved["rows_written"] == 30
