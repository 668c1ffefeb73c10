"""The `batch-embed` command: one subcommand per job."""

from __future__ import annotations

import argparse
import sys

from jobs import bench, demo_corpus, embed, maintain, mine, rerank, submit
from jobs import eval as eval_job


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand; the cluster manifests' entrypoints are checked against this parser."""
    parser = argparse.ArgumentParser(prog="batch-embed", description="Distributed batch embedding on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, summary in (
        ("embed", embed, "embed Parquet shards into a LanceDB table"),
        ("rerank", rerank, "rerank (query, document) pairs into a LanceDB table"),
        ("mine", mine, "mine hard negatives for (query, positive) pairs into JSONL"),
        ("maintain", maintain, "compact a table, build its indexes, drop old versions"),
    ):  # the jobs: each takes --config and --set
        p = sub.add_parser(name, help=summary, description=module.__doc__)
        embed.add_arguments(p)
        p.set_defaults(func=module.run_from_args)
    p = sub.add_parser("eval", help="retrieval quality of a table on judged queries, per Matryoshka size",
                       description=eval_job.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    eval_job.add_arguments(p)
    p.set_defaults(func=eval_job.run_from_args)
    p = sub.add_parser("demo-corpus", help="write the offline demo corpus", description=demo_corpus.__doc__)
    demo_corpus.add_arguments(p)
    p.set_defaults(func=demo_corpus.run_from_args)
    p = sub.add_parser("bench", help="benchmark the job against the raw engine, ray.data.llm and a naive loop",
                       description=bench.__doc__)
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_from_args)
    p = sub.add_parser("submit", help="run a job on a Ray cluster through its job server",
                       description=submit.__doc__)
    submit.add_submit_arguments(p)
    p.set_defaults(func=submit.run_submit)
    p = sub.add_parser("status", help="a submitted job's state")
    submit.add_follow_arguments(p)
    p.set_defaults(func=submit.run_status)
    p = sub.add_parser("logs", help="a submitted job's logs")
    submit.add_follow_arguments(p)
    p.add_argument("--follow", action="store_true", help="stream until the job ends; exit with its status")
    p.set_defaults(func=submit.run_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
