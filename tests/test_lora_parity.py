"""A LoRA adapter served by the vLLM engine gives the merged model's vectors (W + alpha/r * B A on every
targeted module), checked against peft's own merge_and_unload() and the plain transformers reference; and
they differ from the base model's, so an adapter silently ignored fails here."""

from __future__ import annotations

import numpy as np
import pytest

from operators.infer.embedder import Tokenizer
from operators.infer.lora_adapter import base_shapes, check_adapter
from operators.infer.model_spec import load_model_spec
from tests.corpus import documents
from tests.reference import cosines, merged_model, qwen3_reference
from tests.tiny_models import build_lora_adapter

pytestmark = pytest.mark.engine

TEXTS = [text for _, text in documents(12)]
MAX_TOKENS = 48


# One CPU engine in a fresh process (as an engine actor has one): in the test process, after other tests'
# engines, vLLM's KV sizing can find less memory than it asks for. Both adapters on the one engine, in turn.
ENGINE = """
import pickle, sys
import numpy as np
from vllm.lora.request import LoRARequest
from operators.infer.engine import EngineSpec, PoolingEngine

model, max_tokens, ids, payloads, out = pickle.load(open(sys.argv[1], "rb"))
engine = PoolingEngine(EngineSpec(model_path=model, max_model_len=max_tokens, dtype="float32", adapter=payloads[0]))
vectors = []
for i, payload in enumerate(payloads):
    engine._lora = LoRARequest(f"adapter{i}", i + 1, payload.materialize())
    vectors.append(engine.embed(ids))
np.save(out, np.stack(vectors))
"""


def test_the_engine_serves_the_adapter_as_the_merged_model(tiny_qwen3, tmp_path):
    """Adapters saved from the bare model and from the causal-LM wrapper (vLLM drops the wrapper's `model.`)."""
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    ids, _ = Tokenizer(load_model_spec(str(tiny_qwen3)), MAX_TOKENS).encode(TEXTS)
    cases = [("base_model.model.", 1), ("base_model.model.model.", 2)]
    adapters = [build_lora_adapter(tmp_path / f"adapter{seed}", tiny_qwen3, prefix=prefix, seed=seed)
                for prefix, seed in cases]
    payloads = [check_adapter(str(a), base_shapes(tiny_qwen3), str(tiny_qwen3)).payload() for a in adapters]
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps((str(tiny_qwen3), MAX_TOKENS, ids, payloads, str(tmp_path / "got.npy"))))
    done = subprocess.run([sys.executable, "-c", ENGINE, str(args)], capture_output=True, text=True, timeout=600,
                          cwd=str(Path(__file__).resolve().parent.parent))
    assert done.returncode == 0, done.stderr[-3000:]
    got_all = np.load(tmp_path / "got.npy")
    base = qwen3_reference(tiny_qwen3, TEXTS, max_tokens=MAX_TOKENS)
    for (prefix, seed), adapter, got in zip(cases, adapters, got_all, strict=True):
        merged = qwen3_reference(merged_model(tiny_qwen3, adapter, tmp_path / f"merged{seed}"), TEXTS,
                                 max_tokens=MAX_TOKENS)
        assert cosines(got, merged).min() >= 0.999, prefix
        assert cosines(got, base).max() < 0.99, prefix  # the adapter changed every vector
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
