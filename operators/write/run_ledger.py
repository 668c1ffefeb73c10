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


def referenced_data_files(uri: str, ds: Any, storage_options: dict[str, str] | None,
                          fs_options: dict[str, Any] | None = None) -> set[str]:
    """Names of the data files any version of `ds` references (time travel must keep them all), and with
    `fs_options` (how to list the table's folder) those of its kept candidates (`drop_candidates`)."""
    import fsspec.core
    import lance

    fs, root = fsspec.core.url_to_fs(uri, **fs_options) if fs_options is not None else (None, "")
    kept = [v for v, _ in candidate_versions(fs, root)] if fs is not None else []
    names: set[str] = set()
    for version in [v["version"] for v in ds.versions()] + kept:
        at = lance.dataset(uri, version=version, storage_options=storage_options or None)
        for fragment in at.get_fragments():
            names.update(f.path.rsplit("/", 1)[-1] for f in fragment.data_files())
    return names


def candidate_versions(fs: Any, root: str) -> list[tuple[int, str]]:
    """Detached versions of a table (gated rebuilds not published, jobs/embed/gate.py): (version, manifest path)."""
    try:
        listing = fs.ls(f"{root.rstrip('/')}/_versions", detail=False)
    except FileNotFoundError:
        return []
    found = []
    for path in listing:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("d") and name.endswith(".manifest") and name[1:-9].isdigit():
            found.append((int(name[1:-9]), path))
    return sorted(found)


def drop_candidates(uri: str, fs_options: dict[str, Any] | None, older_than: float) -> list[int]:
    """Forget the refused candidates of earlier gated runs (their manifests; `remove_orphans` then removes
    their files): a candidate stays inspectable until the next run that writes its table finishes."""
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(uri, **(fs_options or {}))
    dropped = []
    for version, path in candidate_versions(fs, root):
        info = fs.info(path)
        if _modified(info) < older_than:
            fs.rm(path)
            dropped.append(version)
    return dropped


def _modified(entry: dict[str, Any]) -> float:
    """A listing entry's modification time (epoch seconds), local or object store."""
    if "mtime" in entry:
        return float(entry["mtime"])
    return entry["LastModified"].timestamp()


def remove_orphans(*uris: str, storage_options: dict[str, str] | None = None,
                   fs_options: dict[str, Any] | None = None, older_than: float) -> int:
    """Delete data files that no version references AND that were last written before `older_than`
    (epoch seconds: the run's start), i.e. fragments of killed attempts.

    A file written since then may belong to a concurrent writer's transaction still in flight
    (someone appending or rebuilding with LanceDB next to us), so it is never touched; Lance's own
    `delete_unverified=True` would delete it. Needs the table lock (no writer of ours is running).
    """
    import fsspec.core

    removed = 0
    for uri in uris:
        ds = open_dataset(uri, storage_options)
        if ds is None:
            continue
        fs, root = fsspec.core.url_to_fs(uri, **(fs_options or {}))
        try:
            listing = fs.ls(f"{root.rstrip('/')}/data", detail=True)
        except FileNotFoundError:
            continue
        old = {e["name"].rsplit("/", 1)[-1]: e["name"] for e in listing
               if e.get("type") == "file" and e["name"].endswith(".lance") and _modified(e) < older_than}
        if not old:
            continue  # the common case: no killed attempt left files, and no version walk is needed
        for name in set(old) - referenced_data_files(uri, ds, storage_options, fs_options or {}):
            fs.rm(old[name])
            removed += 1
    return removed
