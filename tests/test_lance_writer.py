"""The fragment writers silence Lance's per-fragment warning themselves (no runtime_env of their own,
so the last stage runs on an idle Ray worker) and keep a LANCE_LOG the user set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh process, as a Ray worker is: Lance reads LANCE_LOG when it is first imported.
WRITE_TWO_FRAGMENTS = """
import sys
import pyarrow as pa
from operators.write.lance_sink import fragment_writer

write_fragments = fragment_writer()
table = pa.table({"a": [1, 2]})
for _ in range(2):
    write_fragments(table, sys.argv[1], schema=table.schema)
print("wrote")
"""

WARNING = "No existing dataset"


def write_in_fresh_process(uri: Path, lance_log: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LANCE_LOG"}
    if lance_log is not None:
        env["LANCE_LOG"] = lance_log
    return subprocess.run([sys.executable, "-c", WRITE_TWO_FRAGMENTS, str(uri)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_fragment_writer_silences_lances_new_dataset_warning(tmp_path):
    done = write_in_fresh_process(tmp_path / "t.lance", lance_log=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote"
    assert WARNING not in done.stderr


@pytest.mark.parametrize("level", ["warn", "info"])
def test_fragment_writer_keeps_the_users_lance_log(tmp_path, level):
    done = write_in_fresh_process(tmp_path / "t.lance", lance_log=level)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(WARNING) == 2  # one per new fragment: the level the user asked for

