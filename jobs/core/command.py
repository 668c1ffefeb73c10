"""What every job's command shares: `--config` / `--set`, loading the config, starting Ray, exit codes.

Exit codes: 0 done; 2 bad config (nothing started); 3 the table is locked by another
writer; 4 storage unreachable past the retry budget; 5 done, but shards were skipped;
6 a gated rebuild failed its gate (the table unchanged, jobs/embed/gate.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from jobs.core import redaction
from jobs.core.config import ConfigError, parse_config, read_raw_config
from operators.read.parquet_source import SourceError
from operators.write.table_lock import TableLockedError

log = logging.getLogger("batch_embed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML job config (see configs/demo.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.dimensions=256 (repeatable)",
    )


def main_for(prog: str, doc: str | None, add: Callable[[argparse.ArgumentParser], None],
             run_from_args: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """`python -m jobs.<job>`: the job's own parser, as `batch-embed <job>` builds it."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add(parser)
    return run_from_args(parser.parse_args(argv))


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the configured / RAY_ADDRESS cluster, or start a local Ray bound to 127.0.0.1.

    `num_cpus`: logical CPUs of the local Ray (default: the machine's cores); `num_gpus`: logical GPUs
    (simulated engines: `engine.backend: simulated`).
    """
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
        return
    from cluster.local_ray import start_local_ray

    start_local_ray(num_cpus=num_cpus, log_to_driver=True, **({"num_gpus": num_gpus} if num_gpus else {}))


def run_command(args: argparse.Namespace, schema: type, run_job: Callable[[Any], Any]) -> int:
    """Every job's command: load and validate the config, run, print the summary; exit 2 / 3 / 4 on errors."""
    redaction.guard_std_streams()  # before logging keeps a reference to stderr
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        raw = read_raw_config(args.config, args.overrides)
        redaction.register_from(raw)
        cfg = parse_config(raw, schema)
        # The effective config (defaults filled in), credentials masked: what ran, in the night's log.
        log.info("config %s: %s", args.config, json.dumps(redaction.masked(cfg.model_dump(mode="json"))))
        summary = run_job(cfg)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except TableLockedError as err:
        print(f"table locked:\n{err}", file=sys.stderr)
        return 3
    except SourceError as err:  # storage unreachable past the retry budget, mid-run (Ray wraps it)
        print(f"source error:\n{source_message(err)}", file=sys.stderr)
        return 4
    print(summary.render())
    gate = getattr(summary, "gate", None)
    if gate is not None and not gate["passed"]:
        print(f"gate failed: {gate['reason']}", file=sys.stderr)
        return 6
    return 5 if getattr(summary, "bad_shards", None) else 0


def source_message(err: SourceError) -> str:
    """The shard-naming message, without the Ray task traceback a remote error carries."""
    text = str(err)
    line = next((ln for ln in reversed(text.splitlines()) if "source shard" in ln), text)
    return line[line.find("source shard"):].strip() if "source shard" in line else line.strip()
