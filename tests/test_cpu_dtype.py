"""`model.dtype: auto` on CPU engines (operators/infer/cpu_dtype.py): bf16 or fp32, whichever the node runs faster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operators.infer.cpu_dtype import cpu_flags, dtype_from_flags, dtype_from_rates, gemm_rates

AMX = {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
AVX512_BF16_ONLY = {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}  # AMD EPYC; Intel with AMX hidden
NO_BF16 = {"fpu", "sse2", "avx2", "avx512f"}


def test_flags_settle_amx_and_cpus_without_bfloat16_instructions():
    assert dtype_from_flags(AMX)[0] == "bfloat16"
    dtype, why = dtype_from_flags(NO_BF16)
    assert dtype == "float32" and "emulated" in why
    # the same flags are fast bfloat16 on AMD EPYC and slow on an Intel Xeon with AMX hidden: measure
    assert dtype_from_flags(AVX512_BF16_ONLY) is None
    assert dtype_from_flags({"fp", "asimd", "bf16"}) is None  # Arm: measure
    assert dtype_from_flags(None) is None


def test_cpuinfo_flags_are_read_from_the_first_cpu(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512_bf16", "amx_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_float32_is_taken_only_when_clearly_faster():
    tera = 1e12
    assert dtype_from_rates({"bfloat16": 0.85 * tera, "float32": 0.21 * tera})[0] == "bfloat16"  # AMD EPYC
    dtype, why = dtype_from_rates({"bfloat16": 0.14 * tera, "float32": 0.26 * tera})  # Intel, AMX hidden
    assert dtype == "float32" and "bfloat16 0.140, float32 0.260 TFLOP/s" in why
    assert dtype_from_rates({"bfloat16": 0.20 * tera, "float32": 0.24 * tera})[0] == "bfloat16"  # a tie


def test_gemm_rates_measures_both_dtypes():
    rates = gemm_rates(64, 64, 64, rounds=1, seconds=0.01)
    assert set(rates) == {"bfloat16", "float32"} and all(r > 1e6 for r in rates.values())


def test_auto_resolves_on_the_cpu_and_stays_as_set_elsewhere():
    from operators.infer.cpu_dtype import cpu_auto_dtype
    from operators.infer.engine import EngineSpec

    assert EngineSpec("m", 64).resolved_dtype == cpu_auto_dtype(1024)[0] in ("bfloat16", "float32")
    assert EngineSpec("m", 64, dtype="float16").resolved_dtype == "float16"
    assert EngineSpec("m", 64, gpus=1.0).resolved_dtype == "auto"  # vLLM's choice on a GPU


@pytest.mark.parametrize(("stored", "loaded", "factor"), [
    ("bfloat16", "float32", 2.0), ("float32", "bfloat16", 0.5), ("bfloat16", "bfloat16", 1.0), (None, "float32", 1.0),
])
def test_engine_memory_is_sized_for_the_dtype_it_loads(tmp_path: Path, stored, loaded, factor):
    from operators.infer.model_spec import weight_bytes

    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, **({"torch_dtype": stored} if stored else {})}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    assert weight_bytes(str(tmp_path)) == 1000
    assert weight_bytes(str(tmp_path), loaded) == int(1000 * factor)
    # hub models this job knows are stored in bfloat16
    assert weight_bytes("Qwen/Qwen3-Embedding-0.6B", "float32") == 2 * weight_bytes("Qwen/Qwen3-Embedding-0.6B")


def test_flags_that_cannot_tell_are_settled_by_a_measurement(monkeypatch):
    from operators.infer import cpu_dtype

    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: AVX512_BF16_ONLY)
    dtype, why = cpu_dtype.cpu_auto_dtype.__wrapped__(256)  # uncached
    assert dtype in ("bfloat16", "float32") and why.startswith("matrix products on this node: bfloat16 ")
