"""Plain `transformers` reference of the Qwen3-Embedding formulas, written from the model card.

Deliberately independent of `operators/`: it tokenises the model-card way
(cut to max_length - 1, then append `<|endoftext|>`), runs the model with left
padding, takes the last position's hidden state and L2-normalises, then
applies Matryoshka truncation + re-normalisation with torch.
"""

from __future__ import annotations

import numpy as np


def qwen3_reference(model_dir, texts, *, instruction=None, max_tokens=512, dimensions=None) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    if instruction is not None:
        texts = [f"Instruct: {instruction}\nQuery:{t}" for t in texts]
    eod = tok.convert_tokens_to_ids("<|endoftext|>")
    batch = tok(
        texts,
        padding=False,
        truncation=True,
        max_length=max_tokens - 1,
        add_special_tokens=False,
        split_special_tokens=True,
    )
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
        ids.append(eod)
        mask.append(1)
    batch = tok.pad(batch, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    emb = F.normalize(hidden[:, -1], p=2, dim=1)  # left padding: the last position is every row's end token
    if dimensions is not None:
        emb = F.normalize(emb[:, :dimensions], p=2, dim=1)
    return emb.numpy().astype(np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)
