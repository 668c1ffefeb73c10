"""A sync night's unchanged rows fold into one row per batch that carries their count, and the count
comes out exact: nothing else of theirs travels on (text, token ids, a vector's worth of floats)."""

from __future__ import annotations

import pyarrow as pa

from operators.prepare.unchanged_tally import COLUMN, fold_unchanged, unchanged_count


def batch(actions: list[str | None]) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(actions))], "text": ["x" * 100] * len(actions),
                     "action": pa.array(actions, pa.string())})


def test_unchanged_rows_fold_into_the_first_one_with_their_count():
    out = fold_unchanged(batch(["new", "unchanged", None, "unchanged", "changed", "unchanged", "columns"]))
    assert out.column("id").to_pylist() == ["d0", "d1", "d2", "d4", "d6"]  # order kept, d1 stands for d1, d3, d5
    assert out.column(COLUMN).to_pylist() == [None, 3, None, None, None]
    same = out.filter(pa.array([a == "unchanged" for a in out.column("action").to_pylist()]))
    assert unchanged_count(same) == 3


def test_a_batch_of_only_unchanged_rows_becomes_one_row():
    out = fold_unchanged(batch(["unchanged"] * 5000))
    assert out.num_rows == 1 and out.column(COLUMN).to_pylist() == [5000]
    assert unchanged_count(out) == 5000


def test_a_batch_without_unchanged_rows_is_kept_whole_with_a_null_count():
    src = batch(["new", None, "changed"])
    out = fold_unchanged(src)
    assert out.select(src.column_names).equals(src)
    assert out.column(COLUMN).null_count == 3 and out.schema.field(COLUMN).type == pa.int64()


def test_an_empty_batch_keeps_its_schema():
    out = fold_unchanged(batch([]))
    assert out.num_rows == 0 and COLUMN in out.column_names


def test_rows_that_were_not_folded_count_one_each():
    # the writer counts a batch the same way whether or not a sync night folded it (append, rerank)
    assert unchanged_count(batch(["unchanged", "unchanged"])) == 2
    two_batches = pa.concat_tables([fold_unchanged(batch(["unchanged"] * 3)), fold_unchanged(batch(["unchanged"]))])
    assert unchanged_count(two_batches) == 4
