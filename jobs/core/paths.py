"""Every path a job builds from its config, in one place: tables, locks, summaries, reports."""

from __future__ import annotations

from datetime import datetime


def table_uri(db_uri: str, table: str) -> str:
    """Where LanceDB keeps table `table` of database `db_uri`."""
    return f"{db_uri.rstrip('/')}/{table}.lance"


def rejected_table(table: str) -> str:
    """The table that keeps the rows a job could not embed or rerank, with their reasons."""
    return f"{table}_rejected"


def lock_path(db_uri: str, table: str) -> str:
    """The table's lease file (operators/write/table_lock.py), next to the database's tables."""
    return f"{db_uri.rstrip('/')}/_locks/{table}.json"


def run_stamp(started: datetime) -> str:
    return started.strftime("%Y%m%dT%H%M%SZ")


def summary_path(db_uri: str, table: str, tag: str) -> str:
    """A run's JSON summary, `<db>/_runs/<table>-<tag>.json`; `tag` is the start time or a submission id."""
    return f"{db_uri.rstrip('/')}/_runs/{table}-{tag}.json"


def report_path(summary: str) -> str:
    """`…/run.json` -> `…/run.html`: the report sits next to its summary."""
    return summary[:-5] + ".html" if summary.endswith(".json") else summary + ".html"
