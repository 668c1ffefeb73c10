"""Pure Matryoshka math: keep the first d dimensions, then L2-normalise."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32; all-zero rows stay zero instead of NaN."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norms, eps)


def mrl_truncate(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka: keep the first `dimensions` values, then re-normalise.

    Re-normalising matters: the first d values of a unit vector are not a unit
    vector, and cosine / dot-product search on them would rank by their norm.
    """
    v = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None:
        if dimensions > v.shape[-1]:
            raise ValueError(f"cannot keep {dimensions} dimensions of {v.shape[-1]}-dimensional vectors")
        v = v[..., :dimensions]
    return l2_normalize(v)
