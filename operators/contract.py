"""Column contracts: operators name the columns they need and fail on the first batch without them."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa


class ContractError(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def require_columns(batch: pa.Table, required: Iterable[str], operator: str) -> None:
    missing = [c for c in required if c not in batch.column_names]
    if missing:
        raise ContractError(f"{operator} needs columns {missing}; the batch has {batch.column_names}")
