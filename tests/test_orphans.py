"""Orphan clean-up removes a killed attempt's files, never a concurrent writer's files still in flight.

Before: `remove_orphans` called Lance's `cleanup_old_versions(delete_unverified=True)`, which deletes
every data file no version references, whatever its age, so a LanceDB writer working next to us
(appending, or rewriting files for an index or compaction) lost its files before its commit.
"""

from __future__ import annotations

import os
import time

import pyarrow as pa

from operators.write.run_ledger import remove_orphans


def data_files(uri) -> set[str]:
    return {p.name for p in (uri / "data").iterdir()}


def test_only_unreferenced_files_older_than_the_run_are_removed(tmp_path):
    import lance
    from lance.fragment import write_fragments

    uri = tmp_path / "docs.lance"
    table = pa.table({"id": [f"r{i}" for i in range(8)], "v": list(range(8))})
    lance.write_dataset(table, uri)
    lance.write_dataset(table, uri, mode="append")  # two versions: time travel keeps both
    committed = data_files(uri)

    killed = write_fragments(table, str(uri), schema=table.schema)  # a killed attempt's, never committed
    killed_files = data_files(uri) - committed
    an_hour_ago = time.time() - 3600
    for name in killed_files:
        os.utime(uri / "data" / name, (an_hour_ago, an_hour_ago))
    run_started = time.time() - 60

    # A concurrent writer, mid-transaction: it wrote its files during our run and commits after our clean-up.
    in_flight = write_fragments(table, str(uri), schema=table.schema)
    in_flight_files = data_files(uri) - committed - killed_files
    assert killed and in_flight and killed_files and in_flight_files

    assert remove_orphans(str(uri), older_than=run_started) == len(killed_files)
    assert data_files(uri) == committed | in_flight_files

    # the concurrent writer commits what it wrote, and every version still reads
    ds = lance.LanceDataset.commit(str(uri), lance.LanceOperation.Append(in_flight), read_version=2)
    assert ds.count_rows() == 24
    assert lance.dataset(uri, version=1).count_rows() == 8


def test_no_old_orphans_means_no_version_walk(tmp_path, monkeypatch):
    import lance

    from operators.write import run_ledger

    uri = tmp_path / "docs.lance"
    lance.write_dataset(pa.table({"id": ["a"]}), uri)
    monkeypatch.setattr(run_ledger, "referenced_data_files", lambda *a: (_ for _ in ()).throw(AssertionError))
    assert remove_orphans(str(uri), older_than=time.time() - 3600) == 0
