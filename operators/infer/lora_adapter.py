"""A PEFT LoRA adapter (`model.adapter`), read and checked against its base model before anything runs.

What ms-swift and peft write: `adapter_config.json` (peft_type LORA, r, lora_alpha, target_modules,
base_model_name_or_path) and `adapter_model.safetensors` with, per targeted module, `...<module>.lora_A.weight`
(r x in_features) and `...<module>.lora_B.weight` (out_features x r). The module names carry peft's
prefix (`base_model.model.`) and, for an adapter trained on a causal-LM wrapper, the wrapper's `model.`;
the base checkpoint names the same modules with or without that `model.`.

Only the safetensors headers are read (8 bytes of length, then JSON): the shapes of every tensor are
checked against the base model's own weights without loading either, so a bad adapter is a config error
at plan time, never a failed engine start on every node.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from operators.infer.model_revision import content_hash

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
_WRAPPER = "model."


# The ranks vLLM sizes its LoRA buffers for (its max_lora_rank must be one of them).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class AdapterError(ValueError):
    """An adapter that cannot be applied to the base model; the message names the file and the fault."""


@dataclass(frozen=True)
class AdapterSpec:
    path: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    base_model: str | None  # base_model_name_or_path, as training wrote it
    content_hash: str  # of both files: the table's provenance (a retrained adapter is a new recipe)
    modules: int  # LoRA-adapted weight matrices

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def payload(self) -> AdapterPayload:
        """The adapter as the engine actors get it: its two files' bytes (a worker node has no such path)."""
        folder = Path(self.path)
        files = tuple((name, (folder / name).read_bytes()) for name in (CONFIG, WEIGHTS))
        return AdapterPayload(self.content_hash, self.rank, files)


@dataclass(frozen=True)
class AdapterPayload:
    """What an engine actor needs to serve the adapter: written to its node's temp folder once, by content hash."""

    content_hash: str
    rank: int
    files: tuple[tuple[str, bytes], ...]

    def materialize(self, root: str | None = None) -> str:
        """A local folder holding the adapter (written atomically; reused by later actors on the node)."""
        folder = Path(root or tempfile.gettempdir()) / "batch_embed_adapters" / self.content_hash
        if not all((folder / name).is_file() for name, _ in self.files):
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
            for name, data in self.files:
                (staging / name).write_bytes(data)
            try:
                os.replace(staging, folder)
            except OSError:  # another actor on the node got there first: its copy is the same bytes
                for name, _ in self.files:
                    (staging / name).unlink()
                staging.rmdir()
        return str(folder)


def lora_rank_slot(rank: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of `rank`."""
    for slot in VLLM_LORA_RANKS:
        if rank <= slot:
            return slot
    raise AdapterError(f"rank {rank} is above the largest vLLM serves ({VLLM_LORA_RANKS[-1]})")


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header, without reading the tensors."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise AdapterError(f"{path}: not a safetensors file (shorter than its header)")
        (size,) = struct.unpack("<Q", raw)
        if size > 100 << 20:
            raise AdapterError(f"{path}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(f.read(size))
        except ValueError as err:
            raise AdapterError(f"{path}: not a safetensors file ({err})") from None
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def base_shapes(model_path: Path) -> dict[str, tuple[int, ...]]:
    """{weight name: shape} over every safetensors file of a local model folder."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(model_path.glob("*.safetensors")):
        shapes.update(safetensors_shapes(file))
    return shapes


def _module_of(key: str) -> tuple[str, str] | None:
    """('layers.0.self_attn.q_proj', 'A') of a LoRA tensor name; None for anything else."""
    for part in ("A", "B"):
        suffix = f".lora_{part}.weight"
        if key.endswith(suffix):
            name = key[: -len(suffix)]
            name = name[len(_PEFT_PREFIX):] if name.startswith(_PEFT_PREFIX) else name
            return name, part
    return None


def _base_weight(module: str, base: dict[str, tuple[int, ...]]) -> str | None:
    """The base checkpoint's name for `module`'s weight: as is, or with / without the causal-LM wrapper's `model.`."""
    bare = module[len(_WRAPPER):] if module.startswith(_WRAPPER) else module
    for name in (f"{module}.weight", f"{bare}.weight", f"{_WRAPPER}{bare}.weight"):
        if name in base:
            return name
    return None


def read_adapter(path: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """(adapter_config.json, tensor shapes) of a local adapter folder; AdapterError naming what is wrong."""
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"{path}: no such folder")
    missing = [n for n in (CONFIG, WEIGHTS) if not (folder / n).is_file()]
    if missing:
        have = sorted(p.name for p in folder.iterdir())
        raise AdapterError(f"{path}: missing {', '.join(missing)} (a peft / ms-swift LoRA adapter folder has both; "
                           f"it has {have})")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except ValueError as err:
        raise AdapterError(f"{path}/{CONFIG}: not JSON ({err})") from None
    return config, safetensors_shapes(folder / WEIGHTS)


def check_adapter(path: str, base: dict[str, tuple[int, ...]], model_name: str, base_check: bool = True,
                  section: str = "model") -> AdapterSpec:
    """The adapter at `path`, checked against the base model's weight shapes (`base_shapes`, or the hub's
    safetensors metadata); AdapterError if it does not fit.

    `base_check`: the adapter's `base_model_name_or_path` must name `model_name` (its last path part, so a
    hub id and a local copy of it agree); `section`: the config section the messages name.
    """
    config, shapes = read_adapter(path)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"{path}: peft_type is {config.get('peft_type')!r}, not LORA (only LoRA adapters apply)")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, int | float):
        raise AdapterError(f"{path}/{CONFIG}: r ({rank!r}) and lora_alpha ({alpha!r}) must be numbers, r >= 1")
    lora_rank_slot(rank)
    base_name = config.get("base_model_name_or_path")
    if base_check and base_name and Path(str(base_name)).name != Path(model_name).name:
        raise AdapterError(f"{path}: trained on {base_name!r}, not {section}.name {model_name!r} (set "
                           f"{section}.adapter_base_check: false if it is the same model under another name)")
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        found = _module_of(key)
        if found is None:
            raise AdapterError(f"{path}/{WEIGHTS}: tensor {key!r} is not a LoRA A/B matrix (modules_to_save and "
                               "other trained weights are not applied)")
        pairs.setdefault(found[0], {})[found[1]] = shape
    if not pairs:
        raise AdapterError(f"{path}/{WEIGHTS}: holds no LoRA matrices")
    for module, ab in sorted(pairs.items()):
        _check_module(path, module, ab, rank, base)
    targets = config.get("target_modules") or []
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    return AdapterSpec(path=str(Path(path).resolve()), rank=rank, alpha=float(alpha), target_modules=targets,
                       base_model=base_name, content_hash=content_hash([Path(path) / CONFIG, Path(path) / WEIGHTS]),
                       modules=len(pairs))


def _check_module(path: str, module: str, ab: dict[str, tuple[int, ...]], rank: int,
                  base: dict[str, tuple[int, ...]]) -> None:
    if set(ab) != {"A", "B"}:
        raise AdapterError(f"{path}: module {module} has lora_{'A' if 'A' in ab else 'B'} but no "
                           f"lora_{'B' if 'A' in ab else 'A'}")
    if module.rsplit(".", 1)[-1] == "lm_head":
        # Embedding models pool hidden states (no head); a reranker's head becomes the yes/no classifier.
        raise AdapterError(f"{path}: targets {module}, the output head, which vLLM does not serve LoRA on for "
                           "embedding or reranking (train the adapter without lm_head in target_modules)")
    weight = _base_weight(module, base)
    if weight is None:
        raise AdapterError(f"{path}: targets {module}, which the base model does not have (a different "
                           "architecture, or an adapter for another model)")
    if len(base[weight]) != 2:
        raise AdapterError(f"{path}: targets {module}, which is not a matrix in the base model (shape "
                           f"{list(base[weight])}); LoRA adapts linear layers")
    out_f, in_f = base[weight]
    a, b = ab["A"], ab["B"]
    if a != (rank, in_f) or b != (out_f, rank):
        raise AdapterError(f"{path}: {module} is {out_f}x{in_f} in the base model, but the adapter's A is "
                           f"{'x'.join(map(str, a))} and B {'x'.join(map(str, b))} (want {rank}x{in_f} and "
                           f"{out_f}x{rank} at r={rank})")
