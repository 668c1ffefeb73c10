"""`batch-embed maintain`: the table upkeep of a run (compaction, indexes, old versions, recall), on its own.

For tables written elsewhere or upkeep on its own schedule. Holds the table's lock, like a job.
"""

from __future__ import annotations

import argparse
import uuid

from pydantic import Field

from jobs.core.command import add_arguments, run_command
from jobs.core.config import ConfigError, StrictModel
from jobs.core.paths import lock_path, table_uri
from jobs.core.sections import RetentionMixin, UpkeepConfig
from operators.storage import fsspec_options, lance_storage_options
from operators.write.run_ledger import open_dataset
from operators.write.table_lock import TableLock
from operators.write.table_upkeep import UpkeepReport, upkeep


class MaintainTable(RetentionMixin):
    uri: str = Field(description="LanceDB database (local folder or s3://).")
    name: str = Field(description="The table.")
    storage_options: dict = Field(default_factory=dict)
    lock_timeout_seconds: float = Field(60.0, ge=4)


class MaintainJobConfig(StrictModel):
    table: MaintainTable
    upkeep: UpkeepConfig = Field(default_factory=UpkeepConfig)


CONFIG = MaintainJobConfig
__all__ = ["CONFIG", "add_arguments", "run", "run_from_args"]


def run(cfg: MaintainJobConfig) -> UpkeepReport:
    """Upkeep of the table under its lease (a job writing it at the same time fails to start, and vice versa)."""
    t = cfg.table
    uri, options = table_uri(t.uri, t.name), lance_storage_options(t.storage_options)
    if open_dataset(uri, options) is None:
        raise ConfigError(f"table.name: no table {t.name!r} at {t.uri}")
    lock = TableLock(lock_path(t.uri, t.name), f"maintain-{uuid.uuid4().hex}",
                     fsspec_options(t.uri, t.storage_options), t.lock_timeout_seconds)
    lock.acquire()
    try:
        return upkeep(uri, options, cfg.upkeep.settings(t.keep_versions, t.keep_days))
    finally:
        lock.release()


def run_from_args(args: argparse.Namespace) -> int:
    return run_command(args, MaintainJobConfig, run)
