"""Folds the rows a sync night leaves alone into one row per batch, right after validation.

Column contract:
- needs `action` (operators/prepare/row_validator.py).
- returns the batch without its `unchanged` rows but the first, and adds `unchanged_rows`
  (int64: on that kept row, how many unchanged rows of the batch it stands for; null on every
  other row). A batch with no unchanged row gains the column, all null.

Why: on a sync night nearly every row is unchanged, and each one used to travel on to the engine
actors and the writers with its text, and leave the Embedder with a vector column as wide as an
embedded row (a fixed-size list holds `dimensions` floats under a null). At 1M rows that was
~1 GiB through the object store for nothing, queued for writers that wait for a CPU. Unchanged
rows are not progress (a resumed run re-checks them), so only their count goes on; the writer
reports it (operators/write/lance_sink.py) and the committer's row check stays exact, a retried
batch included (the count is a column of the batch, not a side channel).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.contract import require_columns

REQUIRED = ("action",)
COLUMN = "unchanged_rows"


def fold_unchanged(batch: pa.Table) -> pa.Table:
    """The operator (a plain function: Ray runs it in the validator's tasks)."""
    require_columns(batch, REQUIRED, "UnchangedTally")
    unchanged = pc.fill_null(pc.equal(batch.column("action"), "unchanged"), False).to_numpy(zero_copy_only=False)
    count = int(unchanged.sum())
    tally = np.zeros(batch.num_rows, dtype=bool)
    if count:
        first = int(np.argmax(unchanged))
        tally[first] = True
        batch = batch.filter(pa.array(~unchanged | tally))
        tally = tally[~unchanged | tally]
    column = pa.array(np.where(tally, count, 0), pa.int64(), mask=~tally)
    return batch.append_column(COLUMN, column)


def unchanged_count(rows: pa.Table) -> int:
    """How many source rows the `unchanged` rows of a batch stand for (each row one, where it was not folded)."""
    if COLUMN not in rows.column_names:
        return rows.num_rows
    return int(pc.sum(pc.fill_null(rows.column(COLUMN), 1)).as_py() or 0)
