"""The table a job writes, planned on the driver: where, at which version, and whether a killed run resumes.

The embedding and reranking jobs write their tables the same way (a main table and a
`<table>_rejected` one, both committed by one committer, with the run's progress in each
commit), so they plan them the same way: open both, find an unfinished run over the same
source listing (resume it), refuse `create` over an existing table, and let the job check
that an existing table was written with the same recipe.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from jobs.core.config import ConfigError
from jobs.core.paths import rejected_table, table_uri
from operators.storage import lance_storage_options
from operators.write import progress as prog
from operators.write.lance_sink import METADATA_KEY, SinkSpec, read_provenance
from operators.write.run_ledger import max_fragment_id, open_dataset, read_ledger

log = logging.getLogger("batch_embed")


@dataclass
class TableTarget:
    sink: SinkSpec
    main_version: int | None  # current version of the main table, None if it does not exist
    rejected_version: int | None
    run_id: str
    source_signature: str
    fragment_floor: int  # fragments with a higher id were written by this run
    resuming: bool = False
    done: prog.Progress = field(default_factory=dict)  # source rows already committed by this run
    abandoned_run: str | None = None  # a killed sync run over another listing, whose ledger this run drops
    existing_provenance: dict[str, Any] | None = None  # the kept table's recorded provenance (not overwrite)
    provenance_update: dict[str, Any] | None = None  # what the run records on the kept table before writing


def existing_provenance(sink: Any) -> dict[str, Any] | None:
    """The provenance an existing table (that this run keeps: not `overwrite`) records, or None."""
    if sink.mode.value == "overwrite":
        return None
    ds = open_dataset(table_uri(sink.uri, sink.table), lance_storage_options(sink.storage_options))
    return read_provenance(ds.schema) if ds is not None else None


def record_engine_dtype(target: TableTarget, dtype: str) -> tuple[TableTarget, str | None]:
    """The target with this run's engine dtype in the provenance it writes (a new table's schema, or an
    update of the kept table's); and a note when the kept table holds vectors of another dtype.

    The table records every dtype it holds (`dtypes`): bfloat16 and float32 vectors of one model differ
    by ~1e-3 in cosine, which is allowed, but never silent."""
    want = read_provenance(target.sink.schema) or {}
    have = target.existing_provenance
    held = sorted(set((have or {}).get("dtypes") or []) | {dtype})
    schema = target.sink.schema.with_metadata({METADATA_KEY: json.dumps({**want, "dtypes": held},
                                                                        sort_keys=True).encode()})
    target = replace(target, sink=replace(target.sink, schema=schema))
    if have is None:
        return target, None
    update = {**have, "dtypes": held}
    if want.get("revision") is not None:
        update["revision"] = want["revision"]  # sync over a new revision: re-embeds every row
    for key in ("adapter", "adapter_uri"):  # sync with another adapter (or none): re-embeds every row too
        update.pop(key, None)
        if want.get(key):
            update[key] = want[key]
    if update != have:
        target.provenance_update = update
    others = [d for d in (have.get("dtypes") or []) if d != dtype]
    note = (f"the table holds {', '.join(others)} vectors and this run writes {dtype} ones (cosines differ by "
            "about 1e-3); the table records both" if others else None)
    return target, note


def plan_table(sink: Any, schema: pa.Schema, listing: list[tuple[str, int]], create_hint: str,
               check_existing: Callable[[pa.Schema, str], None]) -> TableTarget:
    """Plan the write of `sink` (a TableSinkConfig with a `mode`) with the main table's `schema`.

    `listing`: what the run reads, as (name, size) pairs (a resumed run must read the same);
    `create_hint`: the modes to suggest when `create` meets an existing table;
    `check_existing(schema, uri)`: raises ConfigError when the existing table was written otherwise.
    """
    options = lance_storage_options(sink.storage_options)
    main_uri = table_uri(sink.uri, sink.table)
    rejected_uri = table_uri(sink.uri, rejected_table(sink.table))
    main_ds, rejected_ds = open_dataset(main_uri, options), open_dataset(rejected_uri, options)
    signature = prog.source_signature(listing)
    mode = sink.mode.value
    abandoned = None
    resume = None if mode == "overwrite" else find_unfinished_run(sink.table, main_ds, rejected_ds, signature, mode,
                                                                   "sync" in type(sink.mode).__members__)
    if resume is not None and resume[0] is None:
        # sync over a new listing: the killed night's commits are whole table versions (each row with its
        # fingerprint), so this night diffs against them like any other; only its progress is dropped.
        abandoned, resume = resume[1], None
        log.warning("sink.table %s: run %s was killed over another source listing; sync abandons its progress "
                    "and diffs the new listing against what it committed", sink.table, abandoned)
    if main_ds is not None and mode == "create" and resume is None:
        raise ConfigError(f"sink.table: table {sink.table!r} already exists at {main_uri}; use sink.mode: "
                          f"{create_hint}")
    if main_ds is not None and mode != "overwrite":
        check_existing(main_ds.schema, main_uri)
    return TableTarget(
        sink=SinkSpec(main_uri=main_uri, rejected_uri=rejected_uri, schema=schema, storage_options=options,
                      read_version=main_ds.version if main_ds is not None else None,
                      max_rows_per_file=sink.rows_per_fragment, replaces=mode == "overwrite"),
        main_version=main_ds.version if main_ds is not None else None,
        rejected_version=rejected_ds.version if rejected_ds is not None else None,
        run_id=resume[0] if resume else uuid.uuid4().hex,
        source_signature=signature,
        fragment_floor=resume[2] if resume else max_fragment_id(main_ds),
        resuming=resume is not None,
        done=resume[1] if resume else {},
        abandoned_run=abandoned,
        existing_provenance=read_provenance(main_ds.schema) if main_ds is not None and mode != "overwrite" else None,
    )


def find_unfinished_run(table: str, main_ds: Any, rejected_ds: Any, signature: str, mode: str = "create",
                        can_sync: bool = False):
    """(run id, committed progress, fragment floor) of a killed run over this source, or None.

    A killed run over another listing: in `sync` mode (None, its run id), to abandon; otherwise an error.
    """
    ledgers = [read_ledger(ds) if ds is not None else None for ds in (main_ds, rejected_ds)]
    unfinished = [lg for lg in ledgers if lg is not None and not lg.complete]
    if not unfinished:
        return None
    run = unfinished[0]
    if run.source != signature:
        if mode == "sync":
            return None, run.run_id
        sync = (", sink.mode: sync to bring the table to the new source (rows it committed are kept, not "
                "re-embedded)," if can_sync else "")
        raise ConfigError(
            f"source.uri: table {table!r} holds an unfinished run ({run.run_id}) over a different "
            "source listing (shards, row counts or the candidates table changed since it was killed). Re-run with "
            f"the original source to finish it{sync} or use sink.mode: overwrite to rebuild the table"
        )
    same = [lg for lg in ledgers if lg is not None and lg.run_id == run.run_id]
    main_floor = ledgers[0].fragment_floor if ledgers[0] is not None and ledgers[0].run_id == run.run_id else None
    floor = main_floor if main_floor is not None else max_fragment_id(main_ds)
    return run.run_id, prog.merge_progress(*(lg.done for lg in same)), floor
