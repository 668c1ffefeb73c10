"""Which exact weights a model name stands for, recorded in the table so a new revision is a recipe change.

- a hub id: the commit hash of the snapshot the hub cache holds (`.../snapshots/<sha>/`), or the
  hub's current sha when the driver can reach it (the engines download that same revision);
- a local folder (or `pkg://`): a content hash of its weight files and config, since nothing else
  tells two fine-tuned checkpoints saved under the same path apart. Hashing reads every weight byte
  once (about a second a GB); the result is cached by (file names, sizes, modification times) in
  `~/.cache/batch_embed/revisions.json`, so a nightly run re-hashes only when the files change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("batch_embed")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(/|$)")
CACHE = Path(os.environ.get("BATCH_EMBED_CACHE", Path.home() / ".cache" / "batch_embed")) / "revisions.json"


def folder_files(folder: Path) -> list[Path]:
    """What a folder revision covers: weight files and config.json, in a stable order."""
    files = [f for f in folder.iterdir() if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.name == "config.json")]
    return sorted(files, key=lambda f: f.name)


def content_hash(files: list[Path]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def folder_revision(folder: Path, cache: Path = CACHE) -> str:
    """`content:<blake2b>` of a local model folder, cached by the files' names, sizes and mtimes."""
    files = folder_files(folder)
    stamp = json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    key = f"{folder.resolve()}"
    known: dict[str, list[str]] = {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    if key in known and known[key][0] == stamp:
        return known[key][1]
    revision = f"content:{content_hash(files)}"
    known[key] = [stamp, revision]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError as err:  # a read-only home: hash again next time
        log.debug("cannot cache the model revision in %s: %s", cache, err)
    return revision


def hub_revision(repo_id: str) -> str | None:
    """The commit of the cached snapshot (what vLLM loads offline), else the hub's current one."""
    try:
        from huggingface_hub import HfApi, try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str) and (m := _SNAPSHOT.search(cached)):
            return f"hub:{m.group(1)}"
        sha = HfApi().model_info(repo_id, timeout=10).sha
        return f"hub:{sha}" if sha else None
    except Exception:  # noqa: BLE001 - offline and not cached: unknown (recorded as such)
        return None


def model_revision(path: str) -> str | None:
    """The revision of the weights `path` (a resolved model path: folder or hub id) loads; None if unknown."""
    if m := _SNAPSHOT.search(path):
        return f"hub:{m.group(1)}"
    folder = Path(path)
    if folder.is_dir():
        return folder_revision(folder)
    return hub_revision(path)
