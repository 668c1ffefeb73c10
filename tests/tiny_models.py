"""Build tiny Qwen3 checkpoints with fixed seeds: real architecture, random weights.

They exercise the real vLLM code path (tokenizer, last-token pooling, the
sequence-classification rewrite of the reranker) in seconds on a CPU, and the
`transformers` reference in `tests/reference.py` checks the job against them.
Sizes follow what the CPU attention backend accepts: head_dim 64 (16 is refused).
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Text the BPE is trained on: enough English that real sentences split into
# multi-character tokens, plus the words the reranker template needs as single
# tokens ("yes" and "no" must each be one id).
_TRAINING_TEXT = [
    "Judge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".',
    "system user assistant <think> </think> Instruct Query Document yes no",
    "Given a web search query, retrieve relevant passages that answer the query",
    "The quick brown fox jumps over the lazy dog. A search engine ranks documents.",
    "Ray Data streams Parquet shards through actors; LanceDB stores the vectors.",
    "What is the capital of China? The capital of China is Beijing.",
    "Explain gravity. Gravity is a force that attracts two bodies towards each other.",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ( ) [ ] { } ' \" - _ / \\",
]


def build_tiny_qwen3(out_dir: Path, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tiny Qwen3 (`Qwen3ForCausalLM`) and its tokenizer to `out_dir`.

    The same checkpoint serves as embedder (vLLM `runner="pooling"`, last token)
    and as reranker (`Qwen3ForSequenceClassification` over the `no`/`yes` rows of
    the LM head), like the real Qwen3-Embedding and Qwen3-Reranker do.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAINING_TEXT * 20, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        padding_side="left",
        model_max_length=512,
    )
    for word in ("yes", "no"):
        ids = hf_tok(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise RuntimeError(f"tiny tokenizer splits {word!r} into {ids}; the reranker needs one id")
    hf_tok.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    model = Qwen3ForCausalLM(config)
    # Random init gives near-identical hidden states for all inputs; larger
    # weights make the vectors differ enough that a wrong token shows up.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out_dir, safe_serialization=True)
    # sentence-transformers layout of the real Qwen3-Embedding: last-token pooling.
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    (out_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 128, "pooling_mode_lasttoken": True})
    )
    return out_dir


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_lora_adapter(out_dir: Path, base_dir: Path, rank: int = 8, alpha: float = 16, seed: int = 1,
                       targets: tuple[str, ...] = LORA_TARGETS, prefix: str = "base_model.model.",
                       base_name: str | None = None) -> Path:
    """Write a LoRA adapter for the model in `base_dir` as peft saves one (both matrices random and non-zero,
    so the adapted model's vectors differ from the base model's); `prefix`: peft's, plus `model.` for an
    adapter trained on the causal-LM wrapper."""
    import numpy as np
    from safetensors.numpy import save_file

    from operators.infer.lora_adapter import base_shapes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in sorted(base_shapes(base_dir).items()):
        module = name.removesuffix(".weight").removeprefix("model.")
        if len(shape) != 2 or not module.startswith("layers.") or module.rsplit(".", 1)[-1] not in targets:
            continue
        out_f, in_f = shape
        tensors[f"{prefix}{module}.lora_A.weight"] = rng.normal(0, 0.1, (rank, in_f)).astype(np.float32)
        tensors[f"{prefix}{module}.lora_B.weight"] = rng.normal(0, 0.1, (out_f, rank)).astype(np.float32)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    (out_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": list(targets), "lora_dropout": 0.0,
        "bias": "none", "task_type": "FEATURE_EXTRACTION", "base_model_name_or_path": base_name or str(base_dir),
    }))
    return out_dir
