"""`batch-embed submit | status | logs`: run a job on a Ray cluster and follow it (see cluster/submit.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.config import ConfigError


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    from cluster.submit import JOBS

    parser.add_argument("--address", default=None,
                        help="the cluster's job server, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
                        "or http://127.0.0.1:8265)")
    parser.add_argument("--job", choices=JOBS, default="embed", help="which job the config is for (default: embed)")
    parser.add_argument("--config", required=True, help="the job's YAML config (travels with the job)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as in the job itself (repeatable)")
    parser.add_argument("--wait", action="store_true",
                        help="stream the job's logs until it ends and exit with its status")


def add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the id `batch-embed submit` printed")
    parser.add_argument("--address", default=None, help="the cluster's job server (as for submit)")


def run_submit(args: argparse.Namespace) -> int:
    from cluster import submit

    try:
        job_id, where = submit.submit(args.job, Path(args.config), args.overrides, args.address)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except (RuntimeError, ConnectionError) as err:  # job server unreachable or refusing
        print(f"submit: {err}", file=sys.stderr)
        return 1
    print(f"submitted      {job_id}  to {args.address or submit.default_address()}", flush=True)
    if not args.wait:
        print(f"follow with    batch-embed status {job_id} / batch-embed logs {job_id} --follow")
        print(where.render())
        return 0
    code = submit.follow(job_id, args.address)
    state, message = submit.status(job_id, args.address)
    print(f"job {job_id}: {state}" + (f" ({message})" if message and code else ""))
    print(where.render())
    return code


def run_status(args: argparse.Namespace) -> int:
    from cluster import submit

    try:
        state, message = submit.status(args.job_id, args.address)
    except (RuntimeError, ConnectionError) as err:  # unknown job, job server unreachable
        print(f"status: {err}", file=sys.stderr)
        return 1
    print(f"{args.job_id}: {state}" + (f"  {message}" if message else ""))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from cluster import submit

    try:
        if args.follow:
            return submit.follow(args.job_id, args.address)
        print(submit.logs(args.job_id, args.address), end="")
    except (RuntimeError, ConnectionError) as err:
        print(f"logs: {err}", file=sys.stderr)
        return 1
    return 0
