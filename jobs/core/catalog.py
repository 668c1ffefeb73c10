"""The jobs by name, for what reaches a job without importing its package: the CLI, submission, follow-ups.

Each job package has a `job` module with the same face: `CONFIG` (its config model),
`run(cfg)` (returns its summary), `add_arguments(parser)` and `run_from_args(args)`.
A job never imports another job's package; where one job starts another (the embedding
config's `rerank:` section, the benchmark's job contender), it asks this catalog.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> one line of help; the package is `jobs.<name with - as _>`.
JOBS = {
    "embed": "embed Parquet shards into a LanceDB table",
    "rerank": "rerank (query, document) pairs into a LanceDB table",
    "mine": "mine hard negatives for (query, positive) pairs into JSONL",
    "maintain": "compact a table, build its indexes, drop old versions",
    "eval": "retrieval quality of a table on judged queries, per Matryoshka size",
    "demo-corpus": "write the offline demo corpus",
    "bench": "benchmark the job against the raw engine, ray.data.llm and a naive loop",
}
# Jobs that run on a cluster through `batch-embed submit` (the others are local tools).
SUBMITTABLE = ("embed", "rerank", "mine", "maintain")


def job(name: str) -> ModuleType:
    """The `job` module of job `name` (imported on first use)."""
    if name not in JOBS:
        raise KeyError(f"no job {name!r}; jobs: {sorted(JOBS)}")
    return importlib.import_module(f"jobs.{name.replace('-', '_')}.job")
