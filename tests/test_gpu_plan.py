"""GPU and thread planning of engines as pure functions (operators/infer/gpu_plan.py), and how jobs apply it."""

from __future__ import annotations

import pytest

from operators.infer.gpu_plan import (
    cpu_threads_per_engine,
    engines_on_node,
    gpu_engine_args,
    shared_gpu_kv_bytes,
    tensor_parallel_size,
)

GIB = 1 << 30


def test_whole_gpus_above_one_are_tensor_parallel_and_must_divide_the_heads():
    assert tensor_parallel_size(0.5) == tensor_parallel_size(1) == 1
    assert tensor_parallel_size(2, attention_heads=16) == 2
    assert tensor_parallel_size(4, attention_heads=32) == 4
    with pytest.raises(ValueError, match=r"^engine\.gpus_per_actor: 1\.5: .*whole number of GPUs"):
        tensor_parallel_size(1.5)
    with pytest.raises(ValueError, match=r"^engine\.gpus_per_actor: 3: .*16 attention heads"):
        tensor_parallel_size(3, attention_heads=16)
    args = gpu_engine_args(2.0, 2)
    assert args == {"gpu_memory_utilization": 0.9, "tensor_parallel_size": 2, "distributed_executor_backend": "mp"}
    assert gpu_engine_args(1.0) == {"gpu_memory_utilization": 0.9}


def test_a_shared_gpu_is_shared_by_memory_with_the_kv_cache_fixed_up_front():
    # two engines on one 80 GiB GPU: each may use 0.45 of it, whatever the other allocates meanwhile
    assert gpu_engine_args(0.5) == {"gpu_memory_utilization": 0.45}
    assert gpu_engine_args(0.25) == {"gpu_memory_utilization": 0.225}
    kv = shared_gpu_kv_bytes(0.5, 80 * GIB, int(1.2e9))
    assert kv == int(0.45 * 80 * GIB - 1.2 * 1.2e9 - GIB)
    assert 2 * (kv + 1.2 * 1.2e9 + GIB) <= 0.9 * 80 * GIB  # the two shares fit the GPU together
    assert shared_gpu_kv_bytes(1.0, 80 * GIB, int(1.2e9)) is None  # a whole GPU: vLLM profiles it alone
    with pytest.raises(ValueError, match=r"^engine\.gpus_per_actor: 0\.1 of a 24 GiB GPU is 2\.2 GiB, too little"):
        shared_gpu_kv_bytes(0.1, 24 * GIB, int(15.2e9))


def test_cpu_engine_threads_follow_the_node_they_run_on():
    assert cpu_threads_per_engine(2, 1, 1) == 2
    assert cpu_threads_per_engine(2, 1, 2) == 1
    # a pool of 16 on a cluster of 32-core nodes: 16 fit on a node, 2 threads each (not 32 // 16 of the largest)
    assert cpu_threads_per_engine(32, 1, 16) == 2
    assert cpu_threads_per_engine(32, 8, 16) == 8  # only 4 fit by their reservation
    assert cpu_threads_per_engine(8, 1, 16) == 1 and cpu_threads_per_engine(64, 1, 16) == 4
    assert engines_on_node(3, 2, 2) == 1 and engines_on_node(2, 4, 1) == 1  # never 0


def test_an_auto_threaded_actor_sizes_itself_from_its_own_node(monkeypatch):
    from operators.infer.engine import AUTO_THREADS_ENV, NODE_THREADS_ENV, apply_node_threads

    for name in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", NODE_THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(AUTO_THREADS_ENV, "1:16")
    assert apply_node_threads(node_cpus=32) == 2
    import os

    assert os.environ["OMP_NUM_THREADS"] == os.environ["RAYON_NUM_THREADS"] == "2"
    assert os.environ[NODE_THREADS_ENV] == "32"  # 16 engines x 2 threads may share this node
    assert AUTO_THREADS_ENV not in os.environ and apply_node_threads(node_cpus=32) is None


def test_engine_config_turns_gpus_into_the_engine_spec():
    from jobs.core.config import ConfigError, parse_config
    from jobs.core.sections import EngineConfig

    with pytest.raises(ConfigError, match=r"gpus_per_actor: .*whole number of GPUs"):
        parse_config({"gpus_per_actor": 2.5}, EngineConfig)
    eng = parse_config({"gpus_per_actor": 2}, EngineConfig)
    assert eng.spec_fields(2.0, attention_heads=16)["tensor_parallel_size"] == 2
    with pytest.raises(ConfigError, match=r"^engine\.gpus_per_actor: 2: .*7 attention heads"):
        eng.spec_fields(2.0, attention_heads=7)
    assert eng.cpu_scheduling.value == "normal"  # never real-time unless asked for


def test_engine_actor_environment_per_kind_of_engine():
    from jobs.core.engine_pool import engine_env
    from operators.infer.engine import AUTO_THREADS_ENV, NODE_THREADS_ENV

    cpu = engine_env(0.0, 2)
    assert cpu["OMP_NUM_THREADS"] == cpu["RAYON_NUM_THREADS"] == cpu[NODE_THREADS_ENV] == "2"
    assert engine_env(0.0, 1, per_node=2)[NODE_THREADS_ENV] == "2"
    # explicit, so that a job-level runtime_env's "false" (cluster/submit.py) does not win
    assert cpu["TOKENIZERS_PARALLELISM"] == "true"
    auto = engine_env(0.0, None, cpus_per_actor=2, engines=8)
    assert auto[AUTO_THREADS_ENV] == "2:8" and "OMP_NUM_THREADS" not in auto
    # a GPU engine's tokenizer takes the CPUs its actor holds, whatever the node has
    gpu = engine_env(1.0, None, cpus_per_actor=4, engines=16)
    assert gpu["RAYON_NUM_THREADS"] == "4" and "OMP_NUM_THREADS" not in gpu and NODE_THREADS_ENV not in gpu
    assert gpu["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert engine_env(2.0, None, cpus_per_actor=8, tp=2)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
