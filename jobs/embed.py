"""`batch-embed embed` / `python -m jobs.embed`: Parquet shards -> vLLM embeddings -> LanceDB table."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from jobs import redaction
from jobs.config import ConfigError, EmbedJobConfig
from jobs.config_common import parse_config, read_raw_config
from operators.parquet_source import SourceError
from operators.table_lock import TableLockedError

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


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join the configured / RAY_ADDRESS cluster, or start a local Ray bound to 127.0.0.1.

    `num_cpus`: logical CPUs of the local Ray (default: the machine's cores).
    """
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
        return
    from cluster.local_ray import start_local_ray

    start_local_ray(num_cpus=num_cpus, log_to_driver=True)


def in_rerank_section(err: ConfigError) -> ConfigError:
    """The reranking job's error, with its keys put under the embedding config's `rerank:` section."""
    return ConfigError("\n".join(f"rerank.{line}" for line in str(err).splitlines()))


def run(cfg: EmbedJobConfig):
    """Plan (fast checks), start Ray, run, then the `rerank:` section if any; returns the RunSummary."""
    from jobs.committed_run import table_lock
    from jobs.pipeline import run_pipeline
    from jobs.plan import plan_embed_job

    followup = cfg.rerank.job_config(cfg) if cfg.rerank is not None else None
    plan = plan_embed_job(cfg)
    if followup is not None:
        from jobs.rerank_plan import precheck

        try:  # before hours of embedding, not after
            precheck(followup)
        except ConfigError as err:
            raise in_rerank_section(err) from None
    log.info(
        "%d shard(s), %d rows, model %s, %d dims -> %s",
        len(plan.shards),
        plan.total_rows,
        cfg.model.name,
        plan.width,
        plan.sink.main_uri,
    )
    # The lease is claimed before Ray starts: a locked table fails at once, and the lease's
    # settle pause (operators/table_lock) passes while Ray starts instead of after.
    with table_lock(plan, cfg.sink) as lock:
        init_ray(cfg.run.ray_address)
        summary = run_pipeline(plan, lock)
    if followup is not None:
        from jobs import rerank

        try:
            summary.rerank = rerank.run(followup)
        except ConfigError as err:
            raise in_rerank_section(err) from None
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed embed", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, EmbedJobConfig, run)


def run_command(args: argparse.Namespace, schema: type, run_job) -> int:
    """Every job's command: load and validate the config, run, print the summary; exit 2 / 3 on errors."""
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
    return 5 if getattr(summary, "bad_shards", None) else 0


def source_message(err: SourceError) -> str:
    """The shard-naming message, without the Ray task traceback a remote error carries."""
    text = str(err)
    line = next((ln for ln in reversed(text.splitlines()) if "source shard" in ln), text)
    return line[line.find("source shard"):].strip() if "source shard" in line else line.strip()


if __name__ == "__main__":
    sys.exit(main())
