"""Plain `transformers` reference of the Qwen3-Embedding formulas, written from the model card.

Deliberately independent of `operators/`: it tokenises the model-card way
(cut to max_length - 1, then append `<|endoftext|>`), runs the model with left
padding, takes the last position's hidden state and L2-normalises, then
applies Matryoshka truncation + re-normalisation with torch.
"""

from __future__ import annotations

from pathlib import Path

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


def qwen3_rerank_reference(model_dir, pairs, *, instruction=None, max_tokens=8192) -> np.ndarray:
    """The Qwen3-Reranker model card's scoring: template, truncation of the pair, log-softmax over no/yes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
              "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_ids = tok.encode(prefix, add_special_tokens=False)
    suffix_ids = tok.encode(suffix, add_special_tokens=False)
    task = instruction or "Given a web search query, retrieve relevant passages that answer the query"
    texts = [f"<Instruct>: {task}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    enc = tok(texts, padding=False, truncation="longest_first", return_attention_mask=False,
              max_length=max_tokens - len(prefix_ids) - len(suffix_ids), add_special_tokens=False,
              split_special_tokens=True)
    no_id, yes_id = tok.convert_tokens_to_ids("no"), tok.convert_tokens_to_ids("yes")
    scores = []
    with torch.no_grad():
        for ids in enc["input_ids"]:
            logits = model(torch.tensor([prefix_ids + ids + suffix_ids])).logits[0, -1]
            pair = torch.log_softmax(torch.stack([logits[no_id], logits[yes_id]]), dim=0)
            scores.append(pair[1].exp().item())
    return np.array(scores, dtype=np.float32)


def merged_model(base, adapter, out):
    """peft's merge of `adapter` into `base`, saved with the base tokenizer (the reference's input).

    The adapter is loaded on the class it was trained on, as peft needs: the causal-LM wrapper when its
    tensor names carry the wrapper's `model.`, the bare model otherwise."""
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    with safe_open(str(Path(adapter) / "adapter_model.safetensors"), "np") as f:
        wrapped = any(k.startswith("base_model.model.model.") for k in f.keys())
    model = (AutoModelForCausalLM if wrapped else AutoModel).from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out
