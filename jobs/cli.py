"""The `batch-embed` command: one subcommand per job (jobs/core/catalog.py), plus submit / status / logs."""

from __future__ import annotations

import argparse
import sys

from jobs.core import catalog
from jobs.submit import job as submit


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand; the cluster manifests' entrypoints are checked against this parser."""
    parser = argparse.ArgumentParser(prog="batch-embed", description="Distributed batch embedding on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary in catalog.JOBS.items():
        module = catalog.job(name)
        p = sub.add_parser(name, help=summary, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run_from_args)
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
