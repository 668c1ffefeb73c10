"""Pure hashing for rows and their vectors: id hashes, text hashes, fingerprints, provenance."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa


def text_hash(text: str) -> str:
    """Stable content hash of the text as it was read (before any prompt prefix)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def fingerprint(
    text_digest: str, model: str, instruction: str, input_type: str, dimensions: int, max_tokens: int,
    revision: str | None = None, adapter: str | None = None,
) -> str:
    """What a vector depends on; a row whose fingerprint is unchanged need not be re-embedded.

    `revision` (the weights' commit or content hash) joins the key only when known, so tables written
    before revisions were recorded keep their fingerprints (no surprise re-embedding after an upgrade);
    `adapter` (a LoRA adapter's content hash) only when one is applied, so a new adapter re-embeds every row.
    """
    parts = [text_digest, model, instruction, input_type, str(dimensions), str(max_tokens)]
    key = "\x1f".join(parts + ([revision] if revision else []) + ([f"adapter:{adapter}"] if adapter else []))
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """What produced a table's vectors: recorded in its schema metadata, and with a row's text hash
    it makes the row's fingerprint. One object serves both, so they cannot disagree."""

    model: str
    instruction: str
    input_type: str
    dimensions: int
    max_tokens: int
    revision: str | None = None  # the model's weights (operators/infer/model_revision.py); None: not recorded
    adapter: str | None = None  # model.adapter's content hash (operators/infer/lora_adapter.py); None: none
    # Where the adapter was read from: not part of the recipe (a moved adapter is the same adapter), recorded so
    # that eval, rerank and mine can embed queries with it (they check its content against `adapter`).
    adapter_uri: str | None = None

    def fingerprint(self, digest: str) -> str:
        return fingerprint(digest, self.model, self.instruction, self.input_type, self.dimensions, self.max_tokens,
                           self.revision, self.adapter)

    def recorded(self) -> dict[str, object]:
        """What the table's metadata records (no adapter keys where none is applied, as before adapters)."""
        return {k: v for k, v in asdict(self).items() if k not in ("adapter", "adapter_uri") or self.adapter}


# --- vectorised 64-bit hashes, for what is only compared within a run (ids, fingerprints, copied columns) ---

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SHORT = 128  # strings up to this many bytes are hashed as padded 8-byte words; longer ones one by one
_NULL = np.uint64(0x5BD1E9955BD1E995)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic, vectorised)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes (null: as ""), with no per-row Python for short strings.

    Stable across processes and machines; compared within one run and never stored (what is
    stored, `text_hash` and `fingerprint`, keeps its own blake2b).
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    with np.errstate(over="ignore"):
        out = splitmix64(lengths.astype(np.uint64) * _GOLDEN + np.uint64(1))
    short = np.flatnonzero(lengths <= _SHORT)
    if len(short) and len(data):
        width = int(-(-max(int(lengths[short].max()), 1) // 8) * 8)
        pos = starts[short, None] + np.arange(width)[None, :]
        inside = np.arange(width)[None, :] < lengths[short, None]
        raw = np.where(inside, data[np.minimum(pos, len(data) - 1)], 0).astype(np.uint8)
        words = np.ascontiguousarray(raw).view("<u8")
        h, size = out[short], lengths[short]
        for w in range(words.shape[1]):  # only a string's own words: the batch's widest must not change it
            h = np.where(size > 8 * w, splitmix64(h ^ words[:, w]), h)
        out[short] = h
    for i in np.flatnonzero(lengths > _SHORT).tolist():
        digest = hashlib.blake2b(data[starts[i]:starts[i] + lengths[i]].tobytes(), digest_size=8).digest()
        out[i] = np.uint64(int.from_bytes(digest, "little"))
    return out


def hash_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each value of a copied column: strings by their bytes, numbers by value (an int32
    and an int64 5 hash alike, as the table may hold a wider type than a shard), other types by repr."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        h = hash_strings(arr)
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        h = splitmix64(arr.cast(pa.int64()).fill_null(0).to_numpy().view(np.uint64) ^ np.uint64(2))
    elif pa.types.is_floating(t):
        h = splitmix64(arr.cast(pa.float64()).fill_null(0).to_numpy().view(np.uint64) ^ np.uint64(3))
    else:
        h = hash_strings(pa.array([repr(v) for v in arr.to_pylist()], pa.large_string()))
    if arr.null_count:
        h = np.where(arr.is_null().to_numpy(zero_copy_only=False), _NULL, h)
    return h


def hash_rows(table: pa.Table, columns: tuple[str, ...]) -> np.ndarray:
    """One 64-bit hash per row over `columns` (zeros when there are none)."""
    out = np.zeros(table.num_rows, np.uint64)
    for i, name in enumerate(columns):
        with np.errstate(over="ignore"):
            out = splitmix64(out ^ hash_values(table.column(name)) ^ (_GOLDEN * np.uint64(i + 1)))
    return out
