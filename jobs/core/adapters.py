"""`model.adapter` on the driver: fetch a LoRA adapter (local folder or object store) and check it fits the model.

Any fault is a ConfigError naming the setting, raised while planning, before a table is touched or an
engine started. An adapter in object storage is copied once into the job's cache, by its URI and its files'
sizes and ETags / modification times, so a nightly run reads it again only when it changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from jobs.core.config import ConfigError
from operators.infer.lora_adapter import (
    CONFIG,
    WEIGHTS,
    AdapterError,
    AdapterPayload,
    AdapterSpec,
    base_shapes,
    check_adapter,
)
from operators.infer.model_spec import ModelSpec
from operators.storage import fsspec_options

log = logging.getLogger("batch_embed")

CACHE = Path(os.environ.get("BATCH_EMBED_CACHE", Path.home() / ".cache" / "batch_embed")) / "adapters"


def model_label(model: str, adapter: str | None) -> str:
    """The model as a summary names it: with its LoRA adapter's content hash when one applies."""
    return f"{model} + LoRA adapter {adapter[:12]}" if adapter else model


def local_adapter(uri: str, storage_options: dict[str, Any], setting: str, cache: Path = CACHE) -> Path:
    """A local folder holding the adapter at `uri` (the folder itself when it is local)."""
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).expanduser()
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **fsspec_options(uri, storage_options or {}))
    root = root.rstrip("/")
    infos = []
    for name in (CONFIG, WEIGHTS):
        try:
            infos.append(fs.info(f"{root}/{name}"))
        except FileNotFoundError:
            raise ConfigError(f"{setting}: {uri}: missing {name} (a peft / ms-swift LoRA adapter folder has "
                              f"{CONFIG} and {WEIGHTS})") from None
        except OSError as err:
            raise ConfigError(f"{setting}: cannot read {uri}: {err}") from None
    stamp = json.dumps([[i.get("size"), str(i.get("ETag") or i.get("mtime") or i.get("LastModified"))] for i in infos])
    folder = cache / hashlib.blake2b(f"{uri}\0{stamp}".encode(), digest_size=12).hexdigest()
    if not all((folder / name).is_file() for name in (CONFIG, WEIGHTS)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, WEIGHTS):
            fs.get(f"{root}/{name}", str(folder / f".{name}.part"))
            os.replace(folder / f".{name}.part", folder / name)
        log.info("%s: copied %s to %s", setting, uri, folder)
    return folder


def recorded_uri(uri: str) -> str:
    """The adapter's location as a table records it: an object store URI as given, a local folder absolute (eval,
    rerank and mine run from other folders)."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


def table_adapter(recorded: dict[str, Any], override: str | None, storage_options: dict[str, Any],
                  model: ModelSpec, setting: str) -> AdapterPayload | None:
    """The LoRA adapter a vector table's vectors were embedded with (its recorded provenance), fetched and checked
    to be that very adapter (its content hash), so queries are embedded the same way; None: the table has none.

    `override`: where the adapter is now (`<section>.adapter`), when it moved since the table recorded it."""
    want = recorded.get("adapter")
    if not want:
        if override:
            raise ConfigError(f"{setting}: the table was embedded without a LoRA adapter; remove {setting}")
        return None
    uri = override or recorded.get("adapter_uri")
    if not uri:
        raise ConfigError(f"{setting}: the table was embedded with a LoRA adapter (content {want}) whose location "
                          f"it does not record; give its folder as {setting}")
    spec = checked_adapter(uri, storage_options, model, str(recorded.get("model")), base_check=False, setting=setting)
    assert spec is not None
    if spec.content_hash != want:
        raise ConfigError(f"{setting}: {uri} holds adapter {spec.content_hash}, but the table was embedded with "
                          f"adapter {want} (it changed since); give the adapter the table was embedded with as "
                          f"{setting}, or re-embed the table")
    return spec.payload()


def model_shapes(model: ModelSpec, model_name: str, setting: str) -> dict[str, tuple[int, ...]]:
    """{weight: shape} of the base model: its folder's safetensors headers, or for a hub id the hub's
    safetensors metadata (ranged reads of the headers, not the weights)."""
    if Path(model.path).is_dir():
        return base_shapes(Path(model.path))
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(model.path)
    except Exception as err:  # noqa: BLE001 - offline, gated, not safetensors: say so, whatever hub error it was
        section = setting.rsplit(".", 1)[0]
        raise ConfigError(f"{setting}: cannot read the weight shapes of {model_name} to check the adapter against "
                          f"({type(err).__name__}: {err}); give {section}.name as a local folder") from None
    return {name: tuple(info.shape) for file in meta.files_metadata.values() for name, info in file.tensors.items()}


def checked_adapter(uri: str | None, storage_options: dict[str, Any], model: ModelSpec, model_name: str,
                    base_check: bool = True, setting: str = "model.adapter") -> AdapterSpec | None:
    """The adapter, fetched and checked against `model`; None when none is configured."""
    if not uri:
        return None
    folder = local_adapter(uri, storage_options, setting)
    try:
        return check_adapter(str(folder), model_shapes(model, model_name, setting), model_name, base_check,
                             section=setting.rsplit(".", 1)[0])
    except AdapterError as err:
        raise ConfigError(f"{setting}: {err}".replace(str(folder), uri)) from None
