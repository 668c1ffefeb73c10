"""`batch-embed submit | status | logs`: run a job on a Ray cluster and follow it.

The config is validated here, before anything is uploaded (no file checks: paths are the
cluster's), and the summary's path is pinned so that it can be printed now; then
`cluster/submit.py` stages the code and config and hands them to Ray's job server.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from jobs.core import catalog
from jobs.core.config import ConfigError, load_config
from jobs.core.paths import summary_path, table_uri


@dataclass
class Where:
    """Where a job's results land, as its config says (printed when it ends)."""

    table: str | None
    summary: str | None

    def render(self) -> str:
        lines = []
        if self.table:
            lines.append(f"table          {self.table}")
        if self.summary:
            lines.append(f"summary        {self.summary}")
        return "\n".join(lines)


def check_locally(job: str, config: Path, overrides: list[str], submission_id: str) -> tuple[list[str], Where]:
    """Validate the config here and pin the summary's path; returns the overrides to submit and where results go."""
    cfg = load_config(config, overrides, catalog.job(job).CONFIG)
    if job == "mine":
        return overrides, Where(table=None, summary=cfg.output.path)
    if job == "maintain":
        return overrides, Where(table=table_uri(cfg.table.uri, cfg.table.name), summary=None)
    summary = cfg.run.summary_path or summary_path(cfg.sink.uri, cfg.sink.table, submission_id)
    if not cfg.run.summary_path:
        overrides = [*overrides, f"run.summary_path={summary}"]
    return overrides, Where(table=table_uri(cfg.sink.uri, cfg.sink.table), summary=summary)


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="the cluster's job server, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
                        "or http://127.0.0.1:8265)")
    parser.add_argument("--job", choices=catalog.SUBMITTABLE, default="embed",
                        help="which job the config is for (default: embed)")
    parser.add_argument("--config", required=True, help="the job's YAML config (travels with the job)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as in the job itself (repeatable)")
    parser.add_argument("--wait", action="store_true",
                        help="stream the job's logs until it ends and exit with its status")
    add_token_argument(parser)


def add_token_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", default=None,
                        help="the job server's token (Ray token authentication); default: RAY_AUTH_TOKEN, "
                        "RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token")


def add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the id `batch-embed submit` printed")
    parser.add_argument("--address", default=None, help="the cluster's job server (as for submit)")
    add_token_argument(parser)


def run_submit(args: argparse.Namespace) -> int:
    from cluster import submit

    submission_id = submit.new_submission_id(args.job)
    try:
        overrides, where = check_locally(args.job, Path(args.config), args.overrides, submission_id)
        job_id = submit.submit(args.job, Path(args.config), overrides, args.address, submission_id,
                               args.token_file)
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
    try:
        code = submit.follow(job_id, args.address, token_file=args.token_file)
        state, message = submit.status(job_id, args.address, args.token_file)
    except (RuntimeError, ConnectionError) as err:
        print(f"submit: {err}", file=sys.stderr)
        return 1
    print(f"job {job_id}: {state}" + (f" ({message})" if message and code else ""))
    print(where.render())
    return code


def run_status(args: argparse.Namespace) -> int:
    from cluster import submit

    try:
        state, message = submit.status(args.job_id, args.address, args.token_file)
    except (RuntimeError, ConnectionError) as err:  # unknown job, job server unreachable
        print(f"status: {err}", file=sys.stderr)
        return 1
    print(f"{args.job_id}: {state}" + (f"  {message}" if message else ""))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from cluster import submit

    try:
        if args.follow:
            return submit.follow(args.job_id, args.address, token_file=args.token_file)
        print(submit.logs(args.job_id, args.address, args.token_file), end="")
    except (RuntimeError, ConnectionError) as err:
        print(f"logs: {err}", file=sys.stderr)
        return 1
    return 0
