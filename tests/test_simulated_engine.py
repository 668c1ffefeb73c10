"""The simulated engine (`engine.backend: simulated`): the pipeline's load without a model."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from operators.infer.simulated_engine import SimulatedEngine, SimulatedRate, simulated_vectors

IDS = [[1, 2, 3], [3, 2, 1], [7] * 40, [1, 2, 3]]


def test_vectors_are_unit_length_and_a_pure_function_of_the_token_ids():
    v = simulated_vectors(IDS, 64)
    assert v.shape == (4, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(v[0], v[3])  # same input, same vector
    assert abs(float(v[0] @ v[1])) < 0.5  # other order, another vector
    assert np.array_equal(simulated_vectors(IDS[:1], 64)[0], v[0])  # independent of the batch around it
    # ... and of the process: a fresh interpreter computes the same bytes (resume and sync rely on it)
    code = ("import sys; from operators.infer.simulated_engine import simulated_vectors; "
            "sys.stdout.write(simulated_vectors([[1, 2, 3]], 64).tobytes().hex())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other == v[0].tobytes().hex()


def test_engine_interface_and_emulated_rate():
    engine = SimulatedEngine(32, SimulatedRate(tokens_per_second=2000))
    assert engine.realtime_off == "simulated engine"
    started = time.monotonic()
    out = engine.embed(IDS)
    assert time.monotonic() - started >= 49 / 2000  # 49 tokens at 2,000 a second: never faster
    assert out.shape == (4, 32)
    scores = engine.classify(IDS)
    assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all() and scores[0] == scores[3]
    assert engine.embed([]).shape == (0, 0) and engine.classify([]).shape == (0,)
    with pytest.raises(ValueError, match="engine.backend: simulated needs the model's width"):
        SimulatedEngine(0, SimulatedRate())


def test_engine_spec_makes_the_backend_it_names(tiny_qwen3):
    from operators.infer.engine import EngineSpec, make_engine

    spec = EngineSpec(model_path=str(tiny_qwen3), max_model_len=64, backend="simulated",
                      simulated=SimulatedRate(startup_seconds=0.01))
    engine = make_engine(spec)
    assert isinstance(engine, SimulatedEngine) and engine.width == 128  # the model's hidden_size
    assert spec.resolved_dtype == spec.recorded_dtype == "simulated"  # what the table records
