"""`batch-embed maintain`: the table upkeep of a run (compaction, indexes, old versions, recall), on its own.

For tables written elsewhere or upkeep on its own schedule. Holds the table's lock, like a job.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import Field

from jobs.config_common import RetentionMixin, UpkeepConfig, _Strict
from jobs.embed import add_arguments, run_command


class MaintainTable(RetentionMixin):
    uri: str = Field(description="LanceDB database (local folder or s3://).")
    name: str = Field(description="The table.")
    storage_options: dict = Field(default_factory=dict)
    lock_timeout_seconds: float = Field(900.0, gt=0)


class MaintainJobConfig(_Strict):
    table: MaintainTable
    upkeep: UpkeepConfig = Field(default_factory=UpkeepConfig)


def run(cfg: MaintainJobConfig):
    import uuid

    from jobs.config import ConfigError
    from operators.lance_sink import table_uri
    from operators.run_ledger import open_dataset
    from operators.storage import fsspec_options, lance_storage_options
    from operators.table_lock import TableLock
    from operators.table_upkeep import upkeep

    t = cfg.table
    uri, options = table_uri(t.uri, t.name), lance_storage_options(t.storage_options)
    if open_dataset(uri, options) is None:
        raise ConfigError(f"table.name: no table {t.name!r} at {t.uri}")
    lock = TableLock(f"{t.uri.rstrip('/')}/_locks/{t.name}.json", f"maintain-{uuid.uuid4().hex}",
                     fsspec_options(t.uri, t.storage_options), t.lock_timeout_seconds)
    lock.acquire()
    try:
        return upkeep(uri, options, cfg.upkeep.settings(t.keep_versions, t.keep_days))
    finally:
        lock.release()


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, MaintainJobConfig, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed maintain", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
