"""`batch-embed demo-corpus`: a real, offline corpus from the docstrings of Python's standard library.

Every Python install has the same text, so the demo needs no download: one row
per documented module, class and function (id = dotted name, text = first
paragraphs of its docstring), written as a few Parquet shards.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import warnings
from pathlib import Path

# Modules whose import has no side effects and whose docs are plain English.
MODULES = [
    "abc",
    "argparse",
    "array",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "colorsys",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
]


def _clean(doc: str, max_chars: int = 1500) -> str:
    text = inspect.cleandoc(doc).strip()
    return text[:max_chars]


def collect(max_rows: int) -> list[tuple[str, str, str]]:
    """(id, text, module) rows, in a fixed order."""
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for name in MODULES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
        items = [(name, mod)] + [
            (f"{name}.{attr}", getattr(mod, attr, None)) for attr in sorted(dir(mod)) if not attr.startswith("_")
        ]
        for qual, obj in items:
            if obj is None or qual in seen:
                continue
            if qual != name and getattr(obj, "__module__", None) not in (None, name, mod.__name__):
                continue  # re-exported from elsewhere
            doc = inspect.getdoc(obj) if (inspect.isclass(obj) or callable(obj) or qual == name) else None
            if not doc or len(doc) < 40:
                continue
            seen.add(qual)
            rows.append((qual, _clean(doc), name))
            if inspect.isclass(obj):  # its own methods, documented in the class body
                for meth, member in sorted(vars(obj).items()):
                    mdoc = getattr(member, "__doc__", None) if callable(member) else None
                    if not meth.startswith("_") and mdoc and len(mdoc) >= 40:
                        rows.append((f"{qual}.{meth}", _clean(mdoc), name))
            if len(rows) >= max_rows:
                return rows[:max_rows]
    return rows


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


def split_summary(doc: str) -> tuple[str, str] | None:
    """A docstring's one-line summary and the rest, when both are real prose (not a signature line)."""
    head, _, body = doc.partition("\n\n")
    head, body = " ".join(head.split()), body.strip()
    if len(head) < 15 or " " not in head or head.endswith((")", ":")) or "--" in head or len(body) < 60:
        return None
    return head, body


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed demo-corpus", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
