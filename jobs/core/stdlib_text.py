"""Real English text that needs no download: the docstrings of Python's standard library.

Every Python install has the same text, so the demo corpus, the eval tests' retrieval
set and the benchmark's corpus are built from it offline: one row per documented
module, class and function (id = dotted name, text = first paragraphs of its docstring).
"""

from __future__ import annotations

import importlib
import inspect
import warnings

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


def split_summary(doc: str) -> tuple[str, str] | None:
    """A docstring's one-line summary and the rest, when both are real prose (not a signature line)."""
    head, _, body = doc.partition("\n\n")
    head, body = " ".join(head.split()), body.strip()
    if len(head) < 15 or " " not in head or head.endswith((")", ":")) or "--" in head or len(body) < 60:
        return None
    return head, body
