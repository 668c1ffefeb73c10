"""`batch-embed bench`: the figures' arithmetic, and a small real run that must produce every figure and the chart.

No assertion on speed (a noisy 2-core machine); the figures must exist, be
consistent with each other, and come from real runs of every contender.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.bench.corpus import length_targets, make_texts
from jobs.bench.report import (
    after_start_up,
    engine_up_at,
    figures,
    flops_per_token,
    median_runs,
    render_table,
    round_ratios,
    spread,
    token_weighted_context,
)
from jobs.core.report.actor_timeline import count_alive, pool_class_name
from jobs.core.summary import render_actors

MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
          "hidden_act": "gelu", "model_type": "bert"}
QWEN3_06B = {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
             "head_dim": 128, "intermediate_size": 3072, "hidden_act": "silu", "model_type": "qwen3"}


def test_flops_per_token_counts_the_matmuls_and_attention():
    # all-MiniLM-L6-v2: 6 x (4 x 384^2 + 2 x 384 x 1536) = 10.6M weights in its layers.
    assert flops_per_token(MINILM, context=0, causal=False) == 2 * 6 * (4 * 384**2 + 2 * 384 * 1536)
    assert flops_per_token(MINILM, 100, False) - flops_per_token(MINILM, 0, False) == 6 * 4 * 100 * 384
    # Qwen3-Embedding-0.6B: ~0.44B non-embedding weights (GQA k/v, gated MLP) -> ~0.88 GFLOP per token.
    weights = flops_per_token(QWEN3_06B, 0, causal=True) / 2
    assert 0.40e9 < weights < 0.48e9
    # Causal attention sees half its context on average.
    extra = flops_per_token(QWEN3_06B, 200, True) - flops_per_token(QWEN3_06B, 0, True)
    assert extra == 28 * 4 * 100 * 16 * 128


def test_token_weighted_context():
    lengths = [10, 30]
    assert token_weighted_context(sum(lengths), sum(n * n for n in lengths)) == pytest.approx(1000 / 40)


def test_figures_ratio_to_raw_and_table():
    results = {
        "raw": {"rows": 100, "wall_s": 10.0, "tokens": 5000, "driver_peak_rss": 2**30, "workers_peak_rss": 0},
        "job": {"rows": 100, "wall_s": 12.5, "tokens": 5000, "driver_peak_rss": 2**28, "workers_peak_rss": 2**31},
        "naive": {"rows": 100, "wall_s": 20.0, "driver_peak_rss": 2**29, "workers_peak_rss": 0},
        "broken": {"error": "exit 1"},
    }
    f = figures(results, corpus_tokens=5000)
    assert set(f) == {"raw", "job", "naive"}
    assert f["raw"]["ratio_to_raw"] == 1.0 and f["job"]["ratio_to_raw"] == 0.8 and f["naive"]["ratio_to_raw"] == 0.5
    assert f["naive"]["tokens_per_s"] == 250.0  # the corpus's tokens when a contender does not count them
    assert f["job"]["workers_peak_rss_mb"] == 2048.0
    table = render_table(f, {"job": "this job"})
    assert "this job" in table and "0.80" in table


def test_start_up_split_and_the_ratio_after_start_up():
    results = {
        # raw: 40 s in all, 30 s embedding + 2 s tokenising: 8 s of start-up
        "raw": {"rows": 100, "wall_s": 40.0, "tokens": 6400, "tokenize_s": 2.0, "embed_s": 30.0},
        # job: 50 s process wall, 45 s inside the run, engine alive 11 s into the run: 16 s start-up, 34 s of work
        "job": {"rows": 100, "wall_s": 50.0, "tokens": 6400, "job_s": 45.0,
                "actors": {"timeline": {"Embedder": [[1.0, 0], [11.0, 1], [44.0, 0]]}}},
        "no_engine_seen": {"rows": 100, "wall_s": 60.0, "tokens": 6400, "job_s": 55.0,
                           "actors": {"timeline": {"Embedder": [[1.0, 0]]}}},
        "naive": {"rows": 100, "wall_s": 80.0},
        "broken": {"error": "exit 1", "wall_s": 3.0},
    }
    split = after_start_up(results)
    assert set(split) == {"raw", "job"}
    assert split["raw"] == {"start_up_s": 8.0, "after_start_up_s": 32.0, "ratio_to_raw_after_start_up": 1.0}
    assert split["job"]["start_up_s"] == 16.0 and split["job"]["after_start_up_s"] == 34.0
    assert split["job"]["ratio_to_raw_after_start_up"] == pytest.approx(32 / 34, abs=1e-3)
    # two pools: the first engine of either counts
    assert engine_up_at({"timeline": {"Embedder": [[0.0, 0], [9.0, 1]], "Reranker": [[0.0, 0], [7.5, 1]]}}) == 7.5
    assert engine_up_at(None) is None and engine_up_at({"timeline": {}}) is None


def _run(wall: float, **extra) -> dict:
    return {"rows": 100, "wall_s": wall, "tokens": 6400, "driver_peak_rss": 2**28, "workers_peak_rss": 2**30, **extra}


def test_rounds_keep_the_median_run_and_each_rounds_ratio():
    rounds = [
        {"raw": _run(40.0), "job": _run(50.0), "naive": _run(90.0)},
        {"raw": _run(44.0), "job": _run(48.0), "naive": {"error": "exit 1"}},
        {"raw": _run(36.0), "job": _run(45.0), "naive": _run(80.0)},
    ]
    median = median_runs(rounds)
    assert median["raw"]["wall_s"] == 40.0 and median["job"]["wall_s"] == 48.0
    assert median["naive"]["wall_s"] == 80.0  # the lower middle of the two runs that worked
    assert median_runs([{"x": {"error": "a"}}, {"x": {"error": "b"}}]) == {"x": {"error": "b"}}
    per_round = round_ratios(rounds)
    # each round's job against that round's raw engine, not against the median raw run
    assert per_round["job"]["ratio_to_raw"] == [0.8, round(44 / 48, 3), 0.8]
    assert per_round["job"]["wall_s"] == [50.0, 48.0, 45.0]
    assert per_round["naive"]["ratio_to_raw"] == [round(40 / 90, 3), None, 0.45]
    assert per_round["raw"]["ratio_to_raw_after_start_up"] == [None, None, None]  # no embed_s: no split
    assert spread([0.8, None, 0.9, 0.7]) == "0.80 - 0.90 0.70 (median 0.80)"
    assert spread([None]) == "-"


def test_corpus_is_mixed_length_and_reproducible():
    targets = length_targets(5000, seed=0)
    assert targets.min() <= 8 and targets.max() >= 400  # a few tokens to several hundred
    texts = make_texts(300, seed=3)
    assert texts == make_texts(300, seed=3) and len(set(texts)) > 250
    chars = sorted(len(t) for t in texts)
    assert chars[0] < 60 and chars[-1] > 1000


def test_actor_counting_and_summary_line():
    table = [
        {"ActorClassName": pool_class_name("Embedder"), "State": "ALIVE"},
        {"ActorClassName": pool_class_name("Embedder"), "State": "DEAD"},
        {"ActorClassName": pool_class_name("Embedder"), "State": "ALIVE"},
        {"ActorClassName": "IdRegistry", "State": "ALIVE"},
    ]
    assert count_alive(table, [pool_class_name("Embedder"), pool_class_name("Reranker")]) == {
        "MapWorker(MapBatches(Embedder))": 2, "MapWorker(MapBatches(Reranker))": 0}
    line = render_actors({"min": 1, "max": 2, "timeline": {"Embedder": [[0.0, 0], [12.5, 1], [30.0, 2], [61.0, 0]]}})
    assert "Embedder 0@0s->1@12.5s->2@30s->0@61s (peak 2 of max 2)" in line


def _bench(out: Path, *args: str, timeout: int) -> tuple[subprocess.CompletedProcess, dict]:
    """`batch-embed bench --out out *args` in a fresh process; it must succeed. Its output and bench.json."""
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "bench", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "bench.json").read_text())


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", head[16:24])


@pytest.mark.bench
def test_small_bench_run_produces_every_figure(tmp_path):
    out = tmp_path / "bench"
    proc, report = _bench(out, "--rows", "240", "--pipeline-rows", "2000", "--fleet-engines", "2",
                          "--scale-rows", "1000", "--batching-rounds", "2", timeout=2400)
    assert report["errors"] == {}
    # One untimed raw run first, so that no timed contender pays the machine's first-time caches.
    assert report["warm_up"]["rows"] == 64 and report["warm_up"]["seconds"] > 0
    assert "[warm-up]" in proc.stdout and (out / "logs" / "warm-up.log").exists()
    contenders = report["contenders"]
    assert set(contenders) == {"raw", "job", "job_quarter", "job_autoscale", "ray_data_llm", "naive"}
    for name, f in contenders.items():
        assert f["rows"] == (60 if name in ("job_quarter", "job_autoscale") else 240), name
        for key in ("wall_s", "rows_per_s", "tokens_per_s", "driver_peak_rss_mb", "ratio_to_raw", "model_tflops",
                    "fraction_of_peak"):
            assert f[key] > 0, (name, key)
    assert contenders["raw"]["ratio_to_raw"] == 1.0
    assert report["naive_dtype"] == f"torch.{report['warm_up']['dtype']}"  # the naive loop in the job's dtype
    # The pipeline around the engines: ceiling vs floor, fleet feeding, CPU cost per stage, the GPU projection.
    pipeline = report["pipeline"]
    ceiling = pipeline["ceiling"]
    assert ceiling["rows"] == 2000 and ceiling["floor_rows_per_s"] > 0 and ceiling["ceiling_rows_per_s"] > 0
    assert ceiling["ratio"] > 0 and ceiling["target"] == 0.8 and ceiling["time_split"]["engines"]
    fleet = pipeline["fleet"]
    assert fleet["engines"] == 2 and fleet["rows"] == 2000 and fleet["engine_tokens_per_s"] > 0
    assert fleet["tokens_per_s_after_first_engine_up"] > 0 and len(fleet["engine_busy_shares"]) >= 2
    stages = pipeline["stages"]
    assert set(stages["cpu_us_per_row"]) == {"read", "validate", "ids", "tokenise", "write", "commit"}
    assert stages["rows"] == 240 and all(v >= 0 for v in stages["cpu_us_per_row"].values())
    assert stages["cpu_us_per_row"]["tokenise"] > 0 and stages["projection"]["cores_to_feed"] > 0
    assert "pipeline ceiling" in proc.stdout and "keep it fed" in proc.stdout
    # Scale (small here): driver and per-process memory, first and last commit, a 1%-edited sync night.
    scale = report["scale"]
    assert scale["rows"] == [100, 1000] and scale["driver_growth"] > 0 and min(scale["largest_process_private_mb"]) > 0
    assert all(name for name in scale["largest_process"])  # which process it was
    assert scale["first_commit_s"] > 0 and scale["last_commit_s"] > 0 and scale["sync_to_full"] > 0
    # Every contender embedded the same corpus: the same token count where it counts them itself.
    assert contenders["job"]["tokens"] == contenders["raw"]["tokens"] == contenders["ray_data_llm"]["tokens"]
    assert contenders["job"]["workers_peak_rss_mb"] > 0  # Ray's processes and the engine actor were seen
    # The machine's peak is the faster dtype's: on a CPU without bf16 instructions bf16 is emulated (~0.3 GFLOP/s).
    machine = report["machine"]
    assert machine["bf16_gemm_flops_per_s"] > 0 and machine["fp32_gemm_flops_per_s"] > 0
    assert machine["gemm_flops_per_s"] == max(machine["bf16_gemm_flops_per_s"], machine["fp32_gemm_flops_per_s"]) > 1e9
    assert report["model"]["flops_per_token"] > 2e7
    # The batching comparison: both engines, every variant in every round, a verdict against the token budget.
    batching = report["batching"]
    assert set(batching) == {"vllm", "padded"}
    for engine, part in batching.items():
        assert part["rows"] == 60 and part["tokens"] > 0 and part["rounds"] == 2, engine
        variants = part["variants"]
        assert len(variants) == (4 if engine == "vllm" else 3), list(variants)  # budget, 32 rows, 256 rows (, one call)
        assert part["reference"] == next(iter(variants)) and "token budget" in part["reference"]
        for name, v in variants.items():
            assert len(v["seconds"]) == 2 and min(v["seconds"]) > 0 and v["padding"] >= 1.0, (engine, name)
            assert (v["verdict"] is None) == (name == part["reference"]), (engine, name)
    assert (out / "logs" / "batching.log").exists()
    # How the engines' threads ran: real-time, or normal priority with the reason.
    scheduling = report["raw_engine"]["cpu_scheduling"]
    assert scheduling == "real-time (SCHED_RR 1)" or scheduling.startswith("normal priority: "), scheduling
    assert report["driver_memory"]["rows"] == [60, 240]
    # Start-up vs the rest: the raw engine always; a job run where its 1 s actor sampling saw the engine alive
    # (60 rows keep it alive for less than that at times).
    split = [name for name, f in contenders.items() if "start_up_s" in f]
    assert "raw" in split and {"job", "job_quarter", "job_autoscale"} & set(split), split
    for name in split:
        f = contenders[name]
        assert 0 < f["start_up_s"] < f["wall_s"] and f["after_start_up_s"] > 0, name
        assert f["start_up_s"] + f["after_start_up_s"] == pytest.approx(f["wall_s"], abs=0.05), name
        assert f["ratio_to_raw_after_start_up"] > 0, name
    timeline = report["autoscaling"]["timeline"]["Embedder"]
    assert max(n for _, n in timeline) >= 1 and timeline[-1][1] == 0  # the pool came up and was released
    width, height = _png_size(out / "bench.png")
    assert width >= 800 and height >= 600
    for label in ("raw vLLM engine", "ray.data.llm", "sentence-transformers", "% of peak", "driver peak RSS",
                  "autoscaling Embedder", "batching", "start-up", "CPU engine threads"):
        assert label in proc.stdout, label


# The pool growing under a backlog is tested with simulated engines on a two-node cluster (tests/test_cluster.py,
# 1 -> 4 engines): a real-engine version here embedded 8,000 rows (~6 minutes of CI) for the same property.
# The run above checks the autoscaling contender's figure and that its pool ended at zero. `--repeat N` rounds:
# their median and per-round ratios are the pure functions tested above (a real 2-round run cost ~4 minutes).
