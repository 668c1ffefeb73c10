"""Pure hashing for rows and their vectors: id hashes, text hashes, fingerprints, provenance."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def text_hash(text: str) -> str:
    """Stable content hash of the text as it was read (before any prompt prefix)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def id_hash64(row_id: str) -> int:
    """64-bit hash of an id, for duplicate detection without holding the ids themselves."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(), "little")


def fingerprint(
    text_digest: str, model: str, instruction: str, input_type: str, dimensions: int, max_tokens: int,
    revision: str | None = None,
) -> str:
    """What a vector depends on; a row whose fingerprint is unchanged need not be re-embedded.

    `revision` (the weights' commit or content hash) joins the key only when known, so tables written
    before revisions were recorded keep their fingerprints (no surprise re-embedding after an upgrade).
    """
    parts = [text_digest, model, instruction, input_type, str(dimensions), str(max_tokens)]
    key = "\x1f".join(parts + ([revision] if revision else []))
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

    def fingerprint(self, digest: str) -> str:
        return fingerprint(digest, self.model, self.instruction, self.input_type, self.dimensions, self.max_tokens,
                           self.revision)
