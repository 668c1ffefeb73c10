"""Relevance judgements (qrels), read and checked on the driver: `batch-embed eval` and the embed job's gate.

Judgements are small next to the corpus, so they are read whole; a null id or relevance, or a relevance
that is not an integer, is a ConfigError naming the setting, the shard and the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.core.config import ConfigError
from jobs.core.inputs import input_shards

_ID_CHUNK = 1000  # judged ids looked up per table scan


@dataclass
class Qrels:
    judgements: dict[str, dict[str, int]]  # query_id -> doc_id -> relevance
    rows: int
    duplicates: int = 0  # (query, doc) judged more than once: the highest relevance is kept


def _id_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as the job writes them: strings, integers in decimal (as the Parquet source does)."""
    if pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return pc.cast(col, pa.string())
    raise TypeError(f"{col.type}")


def read_qrels(q: Any, section: str = "qrels") -> Qrels:
    """Every judgement (`q`: a QrelsConfig), checked: null ids or relevance and non-integer relevance name their
    row; `setting` prefixes the keys errors name (`gate.qrels` in the embed job)."""
    import pyarrow.parquet as pq

    cols = [(f"{section}.query_id_column", q.query_id_column), (f"{section}.doc_id_column", q.doc_id_column),
            (f"{section}.relevance_column", q.relevance_column)]
    fs, shards = input_shards(q.uri, q.storage_options, cols, f"{section}.uri")
    judgements: dict[str, dict[str, int]] = {}
    rows = duplicates = 0
    for shard in shards:
        with fs.open(fs._strip_protocol(shard.path), "rb") as f:
            table = pq.read_table(f, columns=[c for _, c in cols])
        converted = []
        for setting, name in cols:
            col = table.column(name)
            try:
                col = _relevance(col) if setting.endswith(".relevance_column") else _id_strings(col)
            except (TypeError, pa.ArrowInvalid) as err:
                raise ConfigError(f"{setting}: column {name!r} of {shard.path} has type {col.type}, which is not "
                                  f"{'an integer relevance' if 'relevance' in setting else 'an id'} ({err})") from None
            nulls = pc.is_null(col).to_numpy(zero_copy_only=False).nonzero()[0]
            if len(nulls):
                raise ConfigError(f"{setting}: row {int(nulls[0])} of {shard.path} has a null {name!r}")
            converted.append(col.to_pylist())
        for qid, did, rel in zip(*converted, strict=True):
            docs = judgements.setdefault(qid, {})
            if did in docs:
                duplicates += 1
                rel = max(rel, docs[did])
            docs[did] = rel
        rows += table.num_rows
    return Qrels(judgements, rows, duplicates)


def _relevance(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Graded relevance as int; 1.0 is accepted, 0.5 is not (trec_eval's gains are integers)."""
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        return pc.cast(col, pa.int64())
    if pa.types.is_floating(col.type):
        return pc.cast(col, pa.int64(), safe=True)  # raises ArrowInvalid on a fractional value
    raise TypeError("expected integers")


def missing_doc_ids(ds: Any, id_column: str, doc_ids: set[str]) -> set[str]:
    """The judged documents the table does not hold (looked up by filter; the id index makes it cheap)."""
    wanted = sorted(doc_ids)
    found: set[str] = set()
    for i in range(0, len(wanted), _ID_CHUNK):
        chunk = wanted[i:i + _ID_CHUNK]
        listing = ", ".join("'" + d.replace("'", "''") + "'" for d in chunk)
        table = ds.to_table(columns=[id_column], filter=f"{id_column} IN ({listing})")
        found.update(table.column(id_column).to_pylist())
    return set(wanted) - found
