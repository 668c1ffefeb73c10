"""`batch-embed demo-corpus`: a real, offline corpus from the docstrings of Python's standard library.

One row per documented module, class and function (id = dotted name, text = first
paragraphs of its docstring, module), written as a few Parquet shards; or, with
`--retrieval-set`, a judged retrieval set for `batch-embed eval`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.stdlib_text import collect, split_summary

__all__ = ["add_arguments", "retrieval_set", "run_from_args", "write_corpus", "write_retrieval_set"]


def write_corpus(out: Path, max_rows: int = 3000, shards: int = 4) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = collect(max_rows)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    per = -(-len(rows) // shards)
    for i in range(shards):
        part = rows[i * per : (i + 1) * per]
        if not part:
            break
        table = pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part], "module": [r[2] for r in part]})
        pq.write_table(table, out / f"part-{i:05d}.parquet", row_group_size=512)
    return len(rows)


def retrieval_set(max_rows: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]],
                                          list[tuple[str, str, int]]]:
    """(documents, queries, qrels) from the docstrings: a docstring's summary line is the query, the
    rest of that docstring is the document it should find. The summary is removed from the
    document, so a match is by meaning, not by copied words. Documents that share a summary
    line (overrides documented alike) are all relevant to that one query."""
    docs: list[tuple[str, str, str]] = []
    by_summary: dict[str, list[str]] = {}
    for qual, doc, module in collect(max_rows):
        parts = split_summary(doc)
        if parts is None:
            continue
        docs.append((qual, parts[1], module))
        by_summary.setdefault(parts[0], []).append(qual)
    queries = [(f"q{i:05d}", text) for i, text in enumerate(by_summary)]
    qrels = [(qid, qual, 1) for qid, text in queries for qual in by_summary[text]]
    return docs, queries, qrels


def write_retrieval_set(out: Path, max_rows: int = 3000, shards: int = 2) -> tuple[int, int, int]:
    """`out/docs/*.parquet` (id, text, module), `out/queries.parquet` (query_id, query), `out/qrels.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs, queries, qrels = retrieval_set(max_rows)
    (out / "docs").mkdir(parents=True, exist_ok=True)
    for old in (out / "docs").glob("*.parquet"):
        old.unlink()
    per = -(-len(docs) // shards)
    for i in range(shards):
        part = docs[i * per : (i + 1) * per]
        if part:
            pq.write_table(pa.table({"id": [d[0] for d in part], "text": [d[1] for d in part],
                                     "module": [d[2] for d in part]}),
                           out / "docs" / f"part-{i:05d}.parquet")
    pq.write_table(pa.table({"query_id": [q[0] for q in queries], "query": [q[1] for q in queries]}),
                   out / "queries.parquet")
    pq.write_table(pa.table({"query_id": [r[0] for r in qrels], "doc_id": [r[1] for r in qrels],
                             "relevance": pa.array([r[2] for r in qrels], pa.int32())}), out / "qrels.parquet")
    return len(docs), len(queries), len(qrels)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/demo", help="folder for the Parquet shards (default data/demo)")
    parser.add_argument("--rows", type=int, default=3000, help="at most this many rows")
    parser.add_argument("--shards", type=int, default=4, help="number of Parquet shards")
    parser.add_argument("--retrieval-set", metavar="DIR", help="instead, write a judged retrieval set for "
                        "`batch-embed eval`: DIR/docs/, DIR/queries.parquet, DIR/qrels.parquet")


def run_from_args(args: argparse.Namespace) -> int:
    if args.retrieval_set:
        docs, queries, qrels = write_retrieval_set(Path(args.retrieval_set), args.rows)
        print(f"wrote {docs} documents, {queries} queries and {qrels} judgements to {args.retrieval_set}/")
        return 0
    n = write_corpus(Path(args.out), args.rows, args.shards)
    print(f"wrote {n} rows of Python {sys.version.split()[0]} docstrings to {args.out}/")
    return 0
