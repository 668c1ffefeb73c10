"""A LoRA adapter served by the vLLM engine gives the merged model's vectors (W + alpha/r * B A on every
targeted module), checked against peft's own merge_and_unload() and the plain transformers reference; and
they differ from the base model's, so an adapter silently ignored fails here."""

from __future__ import annotations

import numpy as np
import pytest

from operators.infer.embedder import Tokenizer
from operators.infer.engine import EngineSpec, PoolingEngine
from operators.infer.lora_adapter import base_shapes, check_adapter
from operators.infer.model_spec import load_model_spec
from tests.corpus import documents
from tests.reference import cosines, qwen3_reference
from tests.tiny_models import build_lora_adapter

pytestmark = pytest.mark.engine

TEXTS = [text for _, text in documents(12)]
MAX_TOKENS = 48


def merged_model(base, adapter, out):
    """peft's merge of `adapter` into `base`, saved with the base tokenizer (the reference's input).

    The adapter is loaded on the class it was trained on, as peft needs: the causal-LM wrapper when its
    tensor names carry the wrapper's `model.`, the bare model otherwise."""
    import torch
    from peft import PeftModel
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from operators.infer.lora_adapter import WEIGHTS, safetensors_shapes

    wrapped = any(k.startswith("base_model.model.model.") for k in safetensors_shapes(adapter / WEIGHTS))
    model = (AutoModelForCausalLM if wrapped else AutoModel).from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def test_the_engine_serves_the_adapter_as_the_merged_model(tiny_qwen3, tmp_path):
    """Adapters saved from the bare model and from the causal-LM wrapper (vLLM drops the wrapper's `model.`),
    served one after the other by one engine (one CPU engine per process: each sizes its KV cache against
    the memory left)."""
    from vllm.lora.request import LoRARequest

    ids, _ = Tokenizer(load_model_spec(str(tiny_qwen3)), MAX_TOKENS).encode(TEXTS)
    base = qwen3_reference(tiny_qwen3, TEXTS, max_tokens=MAX_TOKENS)
    engine = None
    for prefix, seed in (("base_model.model.", 1), ("base_model.model.model.", 2)):
        adapter = build_lora_adapter(tmp_path / f"adapter{seed}", tiny_qwen3, prefix=prefix, seed=seed)
        spec = check_adapter(str(adapter), base_shapes(tiny_qwen3), str(tiny_qwen3))
        if engine is None:
            engine = PoolingEngine(EngineSpec(model_path=str(tiny_qwen3), max_model_len=MAX_TOKENS, dtype="float32",
                                              adapter=spec.payload()))
        else:
            engine._lora = LoRARequest(f"adapter{seed}", seed, spec.payload().materialize())
        got = engine.embed(ids)
        merged = qwen3_reference(merged_model(tiny_qwen3, adapter, tmp_path / f"merged{seed}"), TEXTS,
                                 max_tokens=MAX_TOKENS)
        assert cosines(got, merged).min() >= 0.999, prefix
        assert cosines(got, base).max() < 0.99, prefix  # the adapter changed every vector
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
