"""A run's committed progress, read back from the Lance transactions that made it visible.

Every commit of a run carries, in its transaction properties: the run id, the
source signature, the row ranges it made visible, and (on the last one) the
state `complete`. Because these travel inside the same atomic commit as the
fragments, a reader can never see progress without its rows, or rows without
their progress. Reading a ledger costs one small transaction file per commit
of the latest run, not a scan of the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from operators.write import progress as prog

RUN = "batch_embed.run_id"
SOURCE = "batch_embed.source"
PROGRESS = "batch_embed.progress"
STATE = "batch_embed.state"
FLOOR = "batch_embed.fragment_floor"  # highest fragment id before the run's first commit


@dataclass
class RunLedger:
    run_id: str
    source: str
    complete: bool
    done: prog.Progress = field(default_factory=dict)
    fragment_floor: int = -1
    commits: int = 0


def open_dataset(uri: str, storage_options: dict[str, str] | None) -> Any | None:
    import lance

    try:
        return lance.dataset(uri, storage_options=storage_options or None)
    except (ValueError, FileNotFoundError, OSError):
        return None  # Lance reports a missing dataset as ValueError("... was not found")


def read_ledger(ds: Any) -> RunLedger | None:
    """The latest run recorded in a table's transactions, or None if its last commit is not ours."""
    ledger: RunLedger | None = None
    version = ds.version
    while version >= 1:
        tx = ds.read_transaction(version)
        props = (tx.transaction_properties or {}) if tx is not None else {}
        run_id = props.get(RUN)
        if run_id is None or (ledger is not None and run_id != ledger.run_id):
            break
        if ledger is None:
            ledger = RunLedger(run_id=run_id, source=props.get(SOURCE, ""), complete=props.get(STATE) == "complete")
        ledger.done = prog.merge_progress(ledger.done, prog.loads(props.get(PROGRESS)))
        ledger.fragment_floor = int(props.get(FLOOR, -1))
        ledger.commits += 1
        version -= 1
    return ledger


def max_fragment_id(ds: Any | None) -> int:
    if ds is None:
        return -1
    ids = [f.fragment_id for f in ds.get_fragments()]
    return max(ids) if ids else -1


def remove_orphans(*uris: str, storage_options: dict[str, str] | None = None) -> int:
    """Delete data files no version references (fragments written by a killed attempt).

    Keeps every version (time travel stays intact). Only safe while holding the
    table lock: a concurrent writer's uncommitted files look the same.
    """
    from datetime import timedelta

    removed = 0
    for uri in uris:
        ds = open_dataset(uri, storage_options)
        if ds is not None:
            stats = ds.cleanup_old_versions(older_than=timedelta(days=365_000), delete_unverified=True)
            removed += stats.data_files_removed
    return removed
