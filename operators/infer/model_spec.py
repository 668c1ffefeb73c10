"""What the job needs to know about a model before any engine starts.

Read from the model's own files (config.json, the sentence-transformers pooling
config) so that the driver can check `dimensions` and `max_tokens` in a second,
and the workers tokenise exactly the way the model was trained to be used.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

# Sizes of the hub models users name most, for drivers that cannot read the
# hub (offline schedulers); anything else is read from its config.json.
# Weight bytes of the same models in bf16, to size a CPU engine's memory before any download.
KNOWN_WEIGHT_BYTES: dict[str, int] = {
    "Qwen/Qwen3-Embedding-0.6B": 1_200_000_000,
    "Qwen/Qwen3-Embedding-4B": 8_100_000_000,
    "Qwen/Qwen3-Embedding-8B": 15_200_000_000,
    "Qwen/Qwen3-Reranker-0.6B": 1_200_000_000,
    "Qwen/Qwen3-Reranker-4B": 8_100_000_000,
    "Qwen/Qwen3-Reranker-8B": 15_200_000_000,
}

KNOWN_MODELS: dict[str, tuple[int, int]] = {
    "Qwen/Qwen3-Embedding-0.6B": (1024, 32768),
    "Qwen/Qwen3-Embedding-4B": (2560, 32768),
    "Qwen/Qwen3-Embedding-8B": (4096, 32768),
}

# Causal decoder families: their embedding models pool the last token (which must be an end token)
# unless a sentence-transformers pooling config says otherwise; the bench counts their attention as causal.
DECODER_FAMILIES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3"}

DEFAULT_MAX_TOKENS = 8192
END_TOKEN = "<|endoftext|>"


class ModelNotFoundError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """A cheap, picklable description of a model, shipped to workers instead of the model."""

    name: str  # as configured; recorded in the table
    path: str  # what vLLM and the tokenizer load: a local folder or a hub id
    pooling: str  # "last", "mean" or "cls"
    hidden_size: int | None
    max_positions: int | None
    attention_heads: int | None = None  # what tensor parallelism must divide (operators/infer/gpu_plan.py)

    @property
    def appends_end_token(self) -> bool:
        """Last-token pooling reads the hidden state of `<|endoftext|>`, so every input must end with it."""
        return self.pooling == "last"


def resolve_model_path(name: str) -> str:
    """`pkg://package/sub/dir` -> that folder inside an installed package; other names unchanged."""
    if not name.startswith("pkg://"):
        return name
    package, _, sub = name.removeprefix("pkg://").partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"{name}: Python package {package!r} is not installed")
    folder = Path(list(found.submodule_search_locations)[0]) / sub
    if not folder.is_dir():
        raise ModelNotFoundError(f"{name}: {folder} does not exist")
    return str(folder)


def _read_json(folder: Path, rel: str) -> dict | None:
    f = folder / rel
    return json.loads(f.read_text()) if f.is_file() else None


def _hub_config(repo_id: str) -> dict | None:
    """config.json of a hub model if it is cached or reachable; None when offline."""
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(repo_id, "config.json")).read_text())
    except Exception:  # noqa: BLE001 - any hub failure means "unknown here", checked again on the workers
        return None


def _pooling(config: dict, st_pooling: dict | None) -> str:
    if st_pooling:
        if st_pooling.get("pooling_mode_lasttoken"):
            return "last"
        if st_pooling.get("pooling_mode_cls_token"):
            return "cls"
        if st_pooling.get("pooling_mode_mean_tokens"):
            return "mean"
    return "last" if config.get("model_type") in DECODER_FAMILIES else "mean"


def load_model_spec(name: str) -> ModelSpec:
    path = resolve_model_path(name)
    folder = Path(path)
    if folder.is_dir():
        config = _read_json(folder, "config.json")
        if config is None:
            raise ModelNotFoundError(f"{name}: {folder} has no config.json")
        st_pooling = _read_json(folder, "1_Pooling/config.json")
    elif path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ModelNotFoundError(f"{name}: no such model folder, and not a hub id of the form org/name")
    else:
        config = _hub_config(path)
        st_pooling = None
        if config is None:
            hidden, positions = KNOWN_MODELS.get(path, (None, None))
            return ModelSpec(
                name=name,
                path=path,
                pooling="last" if "Qwen3" in path else "mean",
                hidden_size=hidden,
                max_positions=positions,
            )
    hidden = _hidden_size(config)
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if config.get("model_type") == "bert" and positions:
        positions = int(positions)
    heads = config.get("num_attention_heads")
    return ModelSpec(name=name, path=path, pooling=_pooling(config, st_pooling), hidden_size=hidden,
                     max_positions=positions, attention_heads=int(heads) if heads else None)


def effective_max_tokens(spec: ModelSpec, configured: int | None) -> int:
    """The configured limit, or the model's own one capped at DEFAULT_MAX_TOKENS."""
    if configured is not None:
        return configured
    return min(spec.max_positions or DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS)


_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def stored_dtype(path: str) -> str:
    """The checkpoint's dtype from its config.json (`torch_dtype`, or `dtype` in newer files); hub models
    this job knows (Qwen3) are bfloat16, anything else unknown counts as float32."""
    folder = Path(path)
    if not folder.is_dir():
        return "bfloat16" if path in KNOWN_WEIGHT_BYTES else "float32"
    config = _read_json(folder, "config.json") or {}
    dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    return dtype if dtype in _DTYPE_BYTES else "float32"


def _hidden_size(config: dict) -> int | None:
    size = config.get("hidden_size") or config.get("d_model")
    return int(size) if size else None


def hidden_size_of(path: str) -> int | None:
    """`hidden_size` from a local model folder's config.json (None for hub ids and unknown configs)."""
    folder = Path(path)
    config = _read_json(folder, "config.json") if folder.is_dir() else None
    return _hidden_size(config or {})


def weight_bytes(path: str, loaded_dtype: str | None = None) -> int:
    """Size of a model's weight files (local folder), or the known size of a hub model; 0 if unknown.

    `loaded_dtype`: the size once loaded in that dtype instead (a bfloat16 checkpoint in float32 is twice its files).
    """
    folder = Path(path)
    if folder.is_dir():
        size = sum(f.stat().st_size for f in folder.glob("*") if f.suffix in (".safetensors", ".bin", ".pt"))
    else:
        size = KNOWN_WEIGHT_BYTES.get(path, 0)
    if loaded_dtype in _DTYPE_BYTES:
        size = size * _DTYPE_BYTES[loaded_dtype] // _DTYPE_BYTES[stored_dtype(path)]
    return size
