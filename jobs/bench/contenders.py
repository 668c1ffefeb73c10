"""The benchmark's contenders, each run alone in a fresh process (jobs/bench/contender.py).

A process of its own gives each contender a clean start (its own Ray, its own
engine), a whole-process wall time like a user's, and its own memory figures:
the driver's peak RSS (this process) and the peak summed RSS of every process
it started (Ray's GCS, raylet, workers and engines), sampled every 0.2 s (the
process list every 1 s).

Contenders (all read the same Parquet corpus and the same model):
- `raw`: one vLLM engine in this process, the ceiling. The job's own tokenizer
  rules and engine arguments, the whole corpus tokenised up front, then one
  `embed` call with the inputs sorted by length (vLLM's scheduler cuts the
  steps).
- `job`: `batch-embed embed` end to end (Parquet -> Ray -> Lance, committed).
- `ray_data_llm`: Ray's `build_processor(vLLMEngineProcessorConfig(task_type="embed"))`
  on one CPU actor, with the same engine arguments, written with `write_lance`.
- `naive`: sentence-transformers `encode` + LanceDB `add`, a shard at a time.
- `batching`: the same inputs batched several ways through the raw engine and
  through a padded engine, in rotated rounds (jobs/bench/batching.py).
- `peak`: bf16 and fp32 GEMM throughput of this machine (the faster is the physical limit for the FLOPs ratio).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobs.bench.measure import process_seconds
from jobs.core import catalog
from jobs.core.command import init_ray
from jobs.core.config import parse_config

GEMM_SIZE = 2048


def corpus_texts(corpus: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(corpus, columns=["text"]).column("text").to_pylist()


def _write_lance(folder: Path, tables: Iterable[Any]) -> int:
    """What a hand-rolled pipeline does with its vectors: create a LanceDB table, then `add`; rows stored."""
    import lancedb

    db, table = lancedb.connect(str(folder)), None
    for data in tables:
        if table is None:
            table = db.create_table("bench", data, mode="overwrite")
        else:
            table.add(data)
    return table.count_rows() if table is not None else 0


def engine_spec(case: dict[str, Any]):
    from operators.infer.engine import EngineSpec
    from operators.infer.model_spec import load_model_spec

    model = load_model_spec(case["model"])
    engine = case.get("engine", {})  # the job's engine section: the ceiling runs with the same settings
    return model, EngineSpec(model_path=model.path, max_model_len=case["max_tokens"], gpus=0.0,
                             extra=engine.get("vllm", {}), cpu_scheduling=engine.get("cpu_scheduling", "normal"))


def run_raw(case: dict[str, Any]) -> dict[str, Any]:
    from operators.infer.batching import longest_first
    from operators.infer.embedder import Tokenizer
    from operators.infer.engine import PoolingEngine

    model, spec = engine_spec(case)
    texts = corpus_texts(case["corpus"])
    tokenizer = Tokenizer(model, case["max_tokens"])
    t0 = time.monotonic()
    ids, _ = tokenizer.encode(texts)
    tokenize_s = time.monotonic() - t0
    lengths = [len(x) for x in ids]
    engine = PoolingEngine(spec)
    start = time.monotonic()
    engine.embed([ids[i] for i in longest_first(lengths)])  # one call
    embed_s = time.monotonic() - start
    result = {"rows": len(ids), "tokens": sum(lengths), "sum_sq_tokens": sum(n * n for n in lengths),
              "tokenize_s": tokenize_s, "embed_s": embed_s,
              "engine_args": {k: v for k, v in spec.engine_args().items() if k != "model"},
              "cpu_scheduling": scheduling_label(engine.realtime_off)}
    result["wall_s"] = process_seconds()
    return result


def scheduling_label(realtime_off: str | None) -> str:
    """How a PoolingEngine's compute threads ran (`PoolingEngine.realtime_off`)."""
    return "real-time (SCHED_RR 1)" if realtime_off is None else f"normal priority: {realtime_off}"


def run_job(case: dict[str, Any]) -> dict[str, Any]:
    embed = catalog.job("embed")  # the job as a user runs it, through the catalog (no job imports another)
    if case.get("ray_num_cpus") or case.get("ray_num_gpus"):
        # the autoscaling run: room for several engines; the fleet run: logical GPUs for simulated engines
        init_ray(None, num_cpus=case.get("ray_num_cpus"), num_gpus=case.get("ray_num_gpus"))
    raw = {
        "source": {"uri": case.get("job_corpus", case["corpus"])},
        "model": {"name": case["model"], "max_tokens": case["max_tokens"]},
        "engine": case.get("engine", {}),
        "sink": {"uri": case.get("sink_uri") or str(Path(case["workdir"]) / "lancedb"), "table": "bench",
                 "mode": case.get("mode", "overwrite")},
        "upkeep": {"when": "never"},
        "run": {"progress": False, "summary_path": str(Path(case["workdir"]) / "job-summary.json")},
    }
    summary = embed.run(parse_config(raw, embed.CONFIG))
    return {"rows": summary.rows_written, "tokens": summary.tokens, "job_s": summary.seconds,
            "actors": summary.actors, "time_split": summary.time_split, "config": raw}


def run_ray_data_llm(case: dict[str, Any]) -> dict[str, Any]:
    import ray
    import ray.data
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    model, spec = engine_spec(case)
    if case.get("dtype"):  # the raw engine's choice for `auto` (bench.py): this driver need not import torch
        spec = replace(spec, dtype=case["dtype"])
    # Ray 2.60's read_parquet starts with a ListFiles task that takes a whole CPU, which a 2-core
    # node never has free beside the engine actor: the plan waits forever. One more logical CPU.
    cores = os.cpu_count() or 1
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=cores + 1)
    ray.data.DataContext.get_current().enable_progress_bars = False
    max_tokens = case["max_tokens"]
    threads = str(cores)

    class Truncate:
        """A ray.data.llm user's own step: vLLM refuses inputs longer than max_model_len."""

        def __init__(self) -> None:
            from transformers import AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(model.path)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            ids = self.tok(list(batch["text"]), truncation=True, max_length=max_tokens)["input_ids"]
            return {"id": batch["id"], "tokenized_prompt": ids}

    engine_kwargs = {k: v for k, v in spec.engine_args().items()
                     if k not in ("model", "runner", "trust_remote_code")}
    config = vLLMEngineProcessorConfig(
        model_source=model.path, task_type="embed", engine_kwargs=engine_kwargs, batch_size=256, concurrency=1,
        # One CPU actor: a placement bundle with CPU only (the default asks for a GPU).
        placement_group_config={"bundles": [{"CPU": 1}]}, log_engine_metrics=False,
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
        # VLLM_CPU_NUM_OF_RESERVED_CPU=0: vLLM's CPU backend runs an AsyncLLM engine as two processes (scheduler,
        # worker) and by default keeps one core for the scheduler, so on 2 cores the model would run on one.
        # A ray.data.llm user on a small CPU node would take both back.
        runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "VLLM_LOGGING_LEVEL": "WARNING",
                                  "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}},
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {"id": row["id"], "tokenized_prompt": row["tokenized_prompt"]},
        postprocess=lambda row: {"id": row["id"], "vector": row["embeddings"],
                                 "n_tokens": len(row["prompt_token_ids"] or [])},
        # 0.25 CPU each (and the read's): a 1-CPU task waits forever beside the engine's actor on 2 cores.
        preprocess_map_kwargs={"num_cpus": 0.25}, postprocess_map_kwargs={"num_cpus": 0.25},
    )
    ds = ray.data.read_parquet(case["corpus"], columns=["id", "text"], ray_remote_args={"num_cpus": 0.25})
    ds = ds.map_batches(Truncate, batch_size=1024, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25)
    # Ray's write_lance calls a Lance API that pylance 14 no longer has; a user falls back to LanceDB's add.
    import numpy as np
    import pyarrow as pa

    tokens = 0

    def tables():
        nonlocal tokens
        for batch in processor(ds).iter_batches(batch_size=2048, batch_format="numpy"):
            vectors = np.stack(batch["vector"]).astype(np.float32)
            tokens += int(np.sum(batch["n_tokens"]))
            yield pa.table({"id": batch["id"], "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), vectors.shape[1])})

    rows = _write_lance(Path(case["workdir"]) / "ray-data-llm-lancedb", tables())
    return {"rows": rows, "tokens": tokens}


def run_naive(case: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from sentence_transformers import SentenceTransformer

    from operators.infer.model_spec import load_model_spec

    # The job's dtype (what `auto` chose on this machine, bench.py tells it): a float32 loop against
    # bfloat16 engines would measure the dtype, not the pipeline.
    dtype = getattr(torch, case.get("dtype") or "float32")
    model = SentenceTransformer(load_model_spec(case["model"]).path, device="cpu", model_kwargs={"torch_dtype": dtype})
    model.max_seq_length = case["max_tokens"]

    def tables():
        for shard in sorted(Path(case["corpus"]).glob("*.parquet")):
            data = pq.read_table(shard, columns=["id", "text"])
            vectors = model.encode(data.column("text").to_pylist(), batch_size=32, normalize_embeddings=True)
            yield pa.table({"id": data.column("id"), "vector": [v.tolist() for v in vectors]})

    return {"rows": _write_lance(Path(case["workdir"]) / "naive-lancedb", tables()), "dtype": str(dtype)}


def run_peak(case: dict[str, Any]) -> dict[str, Any]:
    """Dense matmul throughput on all cores in bf16 and fp32: what the model's GEMMs could reach at best.

    Both, because which is faster depends on the CPU (operators/infer/cpu_dtype.py); the faster is the limit.
    """
    import torch

    from operators.infer.cpu_dtype import gemm_rates

    torch.set_num_threads(os.cpu_count() or 1)
    n = GEMM_SIZE
    rates = gemm_rates(n, n, n, rounds=1, seconds=case.get("peak_seconds", 3.0) / 2)
    return {"bf16_gemm_flops_per_s": rates["bfloat16"], "fp32_gemm_flops_per_s": rates["float32"],
            "threads": torch.get_num_threads()}
